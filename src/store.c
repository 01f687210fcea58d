/* store.c - Redis access through hiredis: pipelined fetches and the apply script. */
#include "store.h"

#include "config.h"

#include <hiredis/hiredis.h>
#include <limits.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "varint.h"
#include "codec.h"
#include "log.h"
#include "replies.h"
#include "rules.h"
#include "strindex.h"

/* Every connection of the store reads its replies into an arena (replies.h):
 * they are released with replies_free, and a connection goes with replies_context_free. */
#define freeReplyObject(r) replies_free(r)
#define redisFree(c) replies_context_free(c)

/* The apply of layout 4 (see store.h): one call applies a chunk of
 * customers, each with all of its events of the batch, and folds in what
 * layout 2 did in a second script after the commit: the recorded outputs of
 * committed events are dropped and dedupe records past the retention
 * trimmed. All or nothing for the whole call: every read (which checks its
 * key's type), TYPE of the keys only written, the aggregates' integer fields
 * and redis.acl_check_cmd of every write run before the first write.
 * KEYS: aggregates, then per customer p d t l c.
 * ARGV: retention, now (wall clock, ms), ledger_max, customers, n committed
 * sources, n (source, next uncommitted offset) pairs; then per customer:
 * mode ('a' apply, 'x' only drop every recorded output and trim: store_trim),
 * expected version, profile, events, aggregate pairs; per event: id, kind
 * ('t' touchpoint, 'c' credit), content digest, event time, source
 * ("t<partition>", "c<partition>" or ""), offset, outputs, ledger entries,
 * the entries; then the customer's summed (field, delta) pairs.
 * Returns per customer {records trimmed, then per event: status, version |
 * recorded outputs | trim horizon}. */
#define STORE_STR_(x) #x
#define STORE_STR(x) STORE_STR_(x)
static const char apply_script[] =
    "local retention, now, lmax = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])\n"
    "local ncust, ncommit = tonumber(ARGV[4]), tonumber(ARGV[5])\n"
    "local committed = {}\n"
    "local a = 6\n"
    "for i = 1, ncommit do\n"
    "  committed[ARGV[a]] = tonumber(ARGV[a + 1])\n"
    "  a = a + 2\n"
    "end\n"
    "local function fail(code, what)\n"
    "  return redis.error_reply(code .. ' fidelio apply: ' .. what .. '; nothing was written')\n"
    "end\n"
    "-- the profile in pieces of this many bytes (layout 7: :p stays a listpack)\n"
    "local piece = " STORE_STR(STORE_PROFILE_PIECE) "\n"
    "local maxpieces = " STORE_STR(STORE_PROFILE_PIECES_MAX) "\n"
    "local function pieces(prof)\n"
    "  if #prof <= piece or #prof > piece * maxpieces then return 1 end\n"
    "  return math.ceil(#prof / piece)\n"
    "end\n"
    "-- unpack() takes at most ~8000 values: long lists go in slices\n"
    "local function sliced(cmd, key, list)\n"
    "  local out = {}\n"
    "  for i = 1, #list, 1000 do\n"
    "    local r = redis.call(cmd, key, unpack(list, i, math.min(i + 999, #list)))\n"
    "    if type(r) == 'table' then for _, x in ipairs(r) do out[#out + 1] = x end end\n"
    "  end\n"
    "  return out\n"
    "end\n"
    "-- layout 6's dedupe records: \"\\5\" .. 8 bytes of the digest .. the event time as a zigzag varint\n"
    "local function zz(n)\n"
    "  local z, b = n >= 0 and 2 * n or -2 * n - 1, {}\n"
    "  while z >= 128 do local r = z % 128; b[#b + 1] = string.char(r + 128); z = (z - r) / 128 end\n"
    "  b[#b + 1] = string.char(z)\n"
    "  return table.concat(b)\n"
    "end\n"
    "local function unzz(s, i)\n"
    "  local z, m = 0, 1\n"
    "  for k = i, math.min(#s, i + 9) do\n"
    "    local c = string.byte(s, k)\n"
    "    z = z + (c % 128) * m\n"
    "    if c < 128 then if z % 2 == 0 then return z / 2, k + 1 end return -(z + 1) / 2, k + 1 end\n"
    "    m = m * 128\n"
    "  end\n"
    "end\n"
    "local function short(rec) return string.byte(rec, 1) == 5 and #rec >= 10 and #rec <= 19 end\n"
    "-- \"\\6\" .. 8 bytes of digest .. time .. source (2 * partition + 1 for the credits topic) .. offset:\n"
    "-- a touchpoint whose outputs wait in <prefix>o:<source> until committed; its time, source, offset\n"
    "local function rec6(rec)\n"
    "  if string.byte(rec, 1) ~= 6 or #rec < 12 then return nil end\n"
    "  local t, i = unzz(rec, 10)\n"
    "  local c, j\n"
    "  if i then c, j = unzz(rec, i) end\n"
    "  local o, k\n"
    "  if j then o, k = unzz(rec, j) end\n"
    "  if not k or k ~= #rec + 1 or c < 0 or o < 0 then return nil end\n"
    "  return t, (c % 2 == 1 and 'c' or 't') .. string.format('%.0f', math.floor(c / 2)), o\n"
    "end\n"
    "local prefix = string.sub(KEYS[1], 1, -11)\n"
    "local function rd(...)\n"
    "  local r = redis.pcall(...)\n"
    "  if type(r) == 'table' and r.err then return nil, r.err end\n"
    "  return r\n"
    "end\n"
    "local plans, out, writes, ow, owk = {}, {}, {}, {}, {}\n"
    "local agg, aggf = {}, {}\n"
    "for j = 1, ncust do\n"
    "  local k = 1 + 5 * (j - 1)\n"
    "  local kp, kd, kt, kl, kc = KEYS[k + 1], KEYS[k + 2], KEYS[k + 3], KEYS[k + 4], KEYS[k + 5]\n"
    "  local cust = string.sub(kp, #prefix + 2, -4)\n"
    "  local mode, ever, prof = ARGV[a], tonumber(ARGV[a + 1]), ARGV[a + 2]\n"
    "  local nev, nagg = tonumber(ARGV[a + 3]), tonumber(ARGV[a + 4])\n"
    "  a = a + 5\n"
    "  local evs, tids, cids = {}, {}, {}\n"
    "  for e = 1, nev do\n"
    "    local ev = {id = ARGV[a], credit = ARGV[a + 1] == 'c', dig = ARGV[a + 2], at = tonumber(ARGV[a + 3]), ats = ARGV[a + 3],\n"
    "                so = ARGV[a + 4] .. '/' .. ARGV[a + 5], src = ARGV[a + 4], off = tonumber(ARGV[a + 5]),\n"
    "                outs = ARGV[a + 6], nl = tonumber(ARGV[a + 7]), l0 = a + 8}\n"
    "    -- an event read from a partition (layout 8: a credit too): its outputs wait in\n"
    "    -- <prefix>o:<source>, not in :p\n"
    "    ev.os = ev.src ~= '' and ev.off >= 0\n"
    "    ev.f = (ev.credit and 'c' or 't') .. ev.id\n"
    "    if ev.credit then cids[#cids + 1] = ev.id else tids[#tids + 1] = ev.id end\n"
    "    a = a + 8 + ev.nl\n"
    "    evs[e] = ev\n"
    "  end\n"
    "  local ag0 = a\n"
    "  a = a + 2 * nagg\n"
    "  local res = {0}\n"
    "  out[j] = res\n"
    "  -- :p whole: its fields, the profile's pieces (p, p1, ...: np of them), whether a value is\n"
    "  -- longer than a piece (big: Redis keeps the hash as a hashtable)\n"
    "  local all, e1 = rd('HGETALL', kp)\n"
    "  if not all then return fail('WRONGTYPE', e1) end\n"
    "  local h, np, big = {}, 0, false\n"
    "  for i = 1, #all, 2 do\n"
    "    local f, x = all[i], all[i + 1]\n"
    "    h[f] = x\n"
    "    if #x > piece then big = true end\n"
    "    local n = f == 'p' and 0 or (#f <= 8 and string.match(f, '^p[1-9]%d*$') and tonumber(string.sub(f, 2)))\n"
    "    if n and n + 1 > np then np = n + 1 end\n"
    "  end\n"
    "  local cur = {h.v, h.hw, h.tf, h.po, h.tn}\n"
    "  local v = tonumber(cur[1] or '0')\n"
    "  -- the pending list: events whose outputs are kept (field 'o' .. kind .. id of :p) until\n"
    "  -- their batch is committed: kind, \"<source>/<offset>\", NUL, id, NUL\n"
    "  local keep, keepl, drop, po = {}, {}, {}, cur[4] or ''\n"
    "  local i = 1\n"
    "  while i < #po do\n"
    "    local z1 = string.find(po, '\\0', i + 1, true)\n"
    "    local z2 = string.find(po, '\\0', z1 + 1, true)\n"
    "    local kind, so, id = string.sub(po, i, i), string.sub(po, i + 1, z1 - 1), string.sub(po, z1 + 1, z2 - 1)\n"
    "    local src, off = string.match(so, '^(%w*)/(%-?%d+)$')\n"
    "    local c = src and committed[src]\n"
    "    if mode == 'x' or (c and tonumber(off) < c) then drop[#drop + 1] = 'o' .. kind .. id\n"
    "    else keep[kind .. id] = true; keepl[#keepl + 1] = string.sub(po, i, z2) end\n"
    "    i = z2 + 1\n"
    "  end\n"
    "  -- each event: known (DUPLICATE with its kept outputs, CONFLICT), also within the call\n"
    "  local recs, recc = {}, {}\n"
    "  if #tids > 0 then\n"
    "    local r, e2 = rd('HMGET', kd, unpack(tids))\n"
    "    if not r then return fail('WRONGTYPE', e2) end\n"
    "    recs = r\n"
    "  end\n"
    "  if #cids > 0 then\n"
    "    local r, e3 = rd('HMGET', kc, unpack(cids))\n"
    "    if not r then return fail('WRONGTYPE', e3) end\n"
    "    local r1, e4 = rd('HMGET', kd, unpack(cids))\n"
    "    if not r1 then return fail('WRONGTYPE', e4) end\n"
    "    for n = 1, #cids do\n"
    "      local l1 = r1[n]\n"
    "      local t1 = l1 and string.byte(l1, 1)\n"
    "      if not r[n] and l1 and t1 ~= 2 and t1 ~= 3 and t1 ~= 4 and t1 ~= 5 and t1 ~= 6 then r[n] = l1 end\n"
    "    end\n"
    "    recc = r\n"
    "  end\n"
    "  local seen, incall, nt, nc, kept = {}, {}, 0, 0, {}\n"
    "  for _, ev in ipairs(evs) do\n"
    "    local rec\n"
    "    if ev.credit then nc = nc + 1; rec = recc[nc] else nt = nt + 1; rec = recs[nt] end\n"
    "    local st, x = 0, ''\n"
    "    if rec then\n"
    "      local tag = string.byte(rec, 1)\n"
    "      local _, osrc, ooff = rec6(rec)\n"
    "      if osrc or short(rec) or (tag == 3 and #rec == 17) or (tag == 4 and #rec > 17) or (tag == 2 and #rec > 16) then\n"
    "        local dl = (tag == 5 or tag == 6) and 8 or 16\n"
    "        if string.sub(rec, 2, 1 + dl) ~= string.sub(ev.dig, 1, dl) then st = 4\n"
    "        else\n"
    "          st = 1\n"
    "          if tag == 2 then x = string.sub(rec, 18)\n"
    "          elseif osrc then\n"
    "            -- outputs in <prefix>o:<source> until the commit passes the event's offset\n"
    "            local c = committed[osrc]\n"
    "            if not (c and ooff < c) then\n"
    "              ev.okey, ev.ofield = prefix .. 'o:' .. osrc, string.format('%.0f', ooff) .. '/' .. (ev.credit and 'c' or 't') .. cust .. '\\0' .. ev.id\n"
    "              kept[#kept + 1] = ev\n"
    "            end\n"
    "          elseif keep[ev.f] then kept[#kept + 1] = ev end\n"
    "        end\n"
    "      else st, x = 1, rec end\n"
    "    elseif seen[ev.f] then\n"
    "      st = seen[ev.f] == ev.dig and 1 or 4\n"
    "    end\n"
    "    seen[ev.f] = ev.dig\n"
    "    incall[ev.f] = true\n"
    "    ev.st, ev.x = st, x\n"
    "  end\n"
    "  if #kept > 0 then -- redeliveries before the commit: their kept outputs\n"
    "    local fs, ks = {}, {}\n"
    "    for _, ev in ipairs(kept) do\n"
    "      if ev.okey then ks[#ks + 1] = ev else fs[#fs + 1] = 'o' .. ev.f end\n"
    "    end\n"
    "    local r = #fs > 0 and redis.call('HMGET', kp, unpack(fs)) or {}\n"
    "    local n = 0\n"
    "    for _, ev in ipairs(kept) do\n"
    "      if ev.okey then ev.x = redis.call('HGET', ev.okey, ev.ofield) or ''\n"
    "      else n = n + 1; ev.x = r[n] or '' end\n"
    "    end\n"
    "  end\n"
    "  if mode == 'a' and v ~= ever then\n"
    "    for _, ev in ipairs(evs) do\n"
    "      if ev.st ~= 0 then res[#res + 1] = ev.st; res[#res + 1] = ev.x\n"
    "      else res[#res + 1] = 2; res[#res + 1] = string.format('%.0f', v) end\n"
    "    end\n"
    "  else\n"
    "    local hw, tf = tonumber(cur[2] or '0'), tonumber(cur[3] or '0')\n"
    "    -- tn: the oldest event time of the customer's records in :d (\"\": none); absent on a\n"
    "    -- customer of layout <= 3, whose records may still be indexed by time in :t (legacy)\n"
    "    local wasleg = cur[2] and not cur[5]\n"
    "    local old, ntf, legacy, tn = {}, tf, wasleg, tonumber(cur[5] or '')\n"
    "    local ntn, tnw = tn, false\n"
    "    if cur[2] then\n"
    "      local cutoff = math.min(hw, now) - retention\n"
    "      local scan = false\n"
    "      if legacy then\n"
    "        local cand, e5 = rd('ZRANGEBYSCORE', kt, '-inf', '(' .. string.format('%.0f', cutoff), 'LIMIT', 0, 1000)\n"
    "        if not cand then return fail('WRONGTYPE', e5) end\n"
    "        for _, id in ipairs(cand) do\n"
    "          if not keep['t' .. id] and not incall['t' .. id] then old[#old + 1] = id end\n"
    "        end\n"
    "        -- :t drained by this trim: the customer leaves it for good (tn from :d below)\n"
    "        if #redis.call('ZRANGEBYSCORE', kt, '-inf', '+inf', 'LIMIT', 0, #old + 1) == #old then\n"
    "          legacy, scan, tnw = false, true, true\n"
    "        end\n"
    "      elseif tn and (cutoff - tn > retention / 8 or (mode == 'x' and cutoff > tn)) then scan = true end\n"
    "      -- rare: only once the oldest record is an eighth of the retention past it (then every\n"
    "      -- record past it goes): one scan of :d per retention / 8 of event time at most\n"
    "      if scan then\n"
    "        local all, e6 = rd('HGETALL', kd)\n"
    "        if not all then return fail('WRONGTYPE', e6) end\n"
    "        local gone = {}\n"
    "        for _, id in ipairs(old) do gone[id] = true end\n"
    "        ntn, tnw = nil, true\n"
    "        for i = 1, #all, 2 do\n"
    "          local id, rec = all[i], all[i + 1]\n"
    "          local tag = string.byte(rec, 1)\n"
    "          local t6, src6, off6 = rec6(rec)\n"
    "          -- (a \"\\6\" record is kept until its own offset is committed, as kept outputs are)\n"
    "          local held = t6 and not (committed[src6] and off6 < committed[src6])\n"
    "          if (tag == 4 or short(rec) or t6) and not gone[id] then\n"
    "            local t = t6 or (tag == 4 and tonumber(string.sub(rec, 18))) or unzz(rec, 10)\n"
    "            if t and t < cutoff and #old < 1000 and not keep['t' .. id] and not incall['t' .. id] and (mode == 'x' or not held) then\n"
    "              old[#old + 1] = id\n"
    "            elseif t and (not ntn or t < ntn) then ntn = t end\n"
    "          end\n"
    "        end\n"
    "      end\n"
    "      if #old > 0 and cutoff > tf then ntf = cutoff end\n"
    "    end\n"
    "    local dev, nhw = false, hw\n"
    "    for _, ev in ipairs(evs) do\n"
    "      if ev.st == 0 and not ev.credit and ev.at < ntf then ev.st, ev.x = 3, string.format('%.0f', ntf) end\n"
    "      if ev.st ~= 0 then dev = true end\n"
    "      if not ev.credit and ev.at > nhw then nhw = ev.at end\n"
    "      if not legacy and not ev.credit and mode == 'a' and (not ntn or ev.at < ntn) then ntn, tnw = ev.at, true end\n"
    "    end\n"
    "    if dev then\n"
    "      for _, ev in ipairs(evs) do\n"
    "        if ev.st ~= 0 then res[#res + 1] = ev.st; res[#res + 1] = ev.x\n"
    "        else res[#res + 1] = 5; res[#res + 1] = string.format('%.0f', v) end\n"
    "      end\n"
    "    else\n"
    "      local pl = {kp = kp, kd = kd, kt = kt, kl = kl, kc = kc, drop = drop, keepl = keepl, old = old, ntf = ntf,\n"
    "                  tf = tf, v = v, hw = nhw, evs = evs, prof = prof, apply = mode == 'a' and nev > 0, res = res,\n"
    "                  po = po, nt = nt, nc = nc, wasleg = wasleg, tn = ntn}\n"
    "      pl.tnw = not legacy and ((pl.apply and not cur[5]) or tnw)\n"
    "      -- po: the entries kept, then this apply's own whose outputs go in :p (credits, no source)\n"
    "      local npo = {}\n"
    "      for _, p in ipairs(keepl) do npo[#npo + 1] = p end\n"
    "      if pl.apply then\n"
    "        for _, ev in ipairs(evs) do\n"
    "          if not ev.os then npo[#npo + 1] = (ev.credit and 'c' or 't') .. ev.so .. '\\0' .. ev.id .. '\\0'\n"
    "          elseif #ev.outs > 0 then\n"
    "            local ok = prefix .. 'o:' .. ev.src\n"
    "            if not ow[ok] then ow[ok] = {}; owk[#owk + 1] = ok; writes[#writes + 1] = {'HSET', ok, 'x', 'x'} end\n"
    "            local f = ow[ok]\n"
    "            f[#f + 1] = string.format('%.0f', ev.off) .. '/' .. (ev.credit and 'c' or 't') .. cust .. '\\0' .. ev.id\n"
    "            f[#f + 1] = ev.outs\n"
    "          end\n"
    "        end\n"
    "      end\n"
    "      pl.npo = table.concat(npo)\n"
    "      -- a hashtable :p left with nothing longer than a piece is rebuilt (store.h: layout 7)\n"
    "      pl.rebuild = pl.apply and big and pl.npo == '' and (#prof <= piece or pieces(prof) > 1)\n"
    "      pl.hadtf, pl.hadtn = cur[3], cur[5] ~= nil\n"
    "      if pl.apply and not pl.rebuild then\n"
    "        for i = pieces(prof), np - 1 do drop[#drop + 1] = 'p' .. i end\n"
    "      end\n"
    "      if pl.rebuild then\n"
    "        pl.del = {'v', 'hw', 'tf', 'tn', 'po'}\n"
    "        for i = 0, np - 1 do pl.del[#pl.del + 1] = i == 0 and 'p' or 'p' .. i end\n"
    "        for _, f in ipairs(drop) do if f ~= 'po' then pl.del[#pl.del + 1] = f end end\n"
    "        drop = {}; pl.drop = drop\n"
    "      end\n"
    "      if pl.npo == '' and po ~= '' then drop[#drop + 1] = 'po'; pl.npo = nil\n"
    "      elseif pl.npo == po then pl.npo = nil end\n"
    "      plans[#plans + 1] = pl\n"
    "      local w0 = #writes\n"
    "      local wd, wc = pl.apply and nt > 0, pl.apply and nc > 0\n"
    "      if pl.apply or ntf > tf or #drop > 0 or pl.tnw then writes[#writes + 1] = {'HSET', kp, 'v', '1'} end\n"
    "      if #drop > 0 or pl.rebuild then writes[#writes + 1] = {'HDEL', kp, 'x'} end\n"
    "      if #old > 0 then\n"
    "        writes[#writes + 1] = {'HDEL', kd, 'x'}\n"
    "        if wasleg then writes[#writes + 1] = {'ZREM', kt, 'x'} end\n"
    "      end\n"
    "      if wd then writes[#writes + 1] = {'HSET', kd, 'x', 'x'} end\n"
    "      if wc then writes[#writes + 1] = {'HSET', kc, 'x', 'x'} end\n"
    "      if pl.apply then\n"
    "        local nl = 0\n"
    "        for _, ev in ipairs(evs) do nl = nl + ev.nl end\n"
    "        if nl > 0 then\n"
    "          local t = redis.call('TYPE', kl).ok\n"
    "          if t ~= 'none' and t ~= 'list' then return fail('WRONGTYPE', kl .. ' is a ' .. t .. ', not a list') end\n"
    "          writes[#writes + 1] = {'RPUSH', kl, 'x'}\n"
    "          writes[#writes + 1] = {'LTRIM', kl, '0', '-1'}\n"
    "        end\n"
    "        for i = ag0, ag0 + 2 * nagg - 1, 2 do\n"
    "          local f, d = ARGV[i], tonumber(ARGV[i + 1])\n"
    "          local g = agg[f]\n"
    "          if not g then g = {sum = 0, raw = {}}; agg[f] = g; aggf[#aggf + 1] = f end\n"
    "          g.sum = g.sum + d\n"
    "          g.raw[#g.raw + 1] = ARGV[i + 1]\n"
    "          if math.abs(d) >= 2^52 or math.abs(g.sum) >= 2^52 then g.big = true end\n"
    "        end\n"
    "      end\n"

    "    end\n"
    "  end\n"
    "end\n"
    "if #aggf > 0 then\n"
    "  writes[#writes + 1] = {'HINCRBY', KEYS[1], 'x', '1'}\n"
    "  local t = redis.call('TYPE', KEYS[1]).ok\n"
    "  if t ~= 'none' and t ~= 'hash' then return fail('WRONGTYPE', KEYS[1] .. ' is a ' .. t .. ', not a hash') end\n"
    "  local cur = sliced('HMGET', KEYS[1], aggf)\n"
    "  for i, f in ipairs(aggf) do\n"
    "    local n = cur[i]\n"
    "    local sum = tonumber(n or '0') and tonumber(n or '0') + agg[f].sum\n"
    "    if (n and not string.match(n, '^%-?%d+$')) or not sum or math.abs(sum) >= 9e18 then\n"
    "      return fail('ERR', KEYS[1] .. ' field ' .. f .. ' would not be an integer')\n"
    "    end\n"
    "  end\n"
    "end\n"
    "if redis.acl_check_cmd then\n"
    "  for _, w in ipairs(writes) do\n"
    "    if not redis.acl_check_cmd(unpack(w)) then\n"
    "      return fail('NOPERM', 'this Redis user may not run ' .. w[1] .. ' on ' .. w[2])\n"
    "    end\n"
    "  end\n"
    "end\n"
    "-- the profile first: Redis checks OOM only until a script's first write, and a\n"
    "-- delete (HDEL, ZREM) passes it; so OOM refuses the call before anything changed\n"
    "for _, pl in ipairs(plans) do\n"
    "  local ph = {}\n"
    "  if pl.apply then\n"
    "    ph = {'v', string.format('%.0f', pl.v + #pl.evs)}\n"
    "    local n = pieces(pl.prof)\n"
    "    if n == 1 then ph[#ph + 1] = 'p'; ph[#ph + 1] = pl.prof end\n"
    "    for i = 0, n > 1 and n - 1 or -1 do\n"
    "      ph[#ph + 1] = i == 0 and 'p' or 'p' .. i; ph[#ph + 1] = string.sub(pl.prof, piece * i + 1, piece * (i + 1))\n"
    "    end\n"
    "    ph[#ph + 1] = 'hw'; ph[#ph + 1] = string.format('%.0f', pl.hw)\n"
    "    for _, ev in ipairs(pl.evs) do\n"
    "      if not ev.os then ph[#ph + 1] = 'o' .. ev.f; ph[#ph + 1] = ev.outs end\n"
    "    end\n"
    "  end\n"
    "  if pl.npo then ph[#ph + 1] = 'po'; ph[#ph + 1] = pl.npo end\n"
    "  if pl.ntf > pl.tf then ph[#ph + 1] = 'tf'; ph[#ph + 1] = string.format('%.0f', pl.ntf)\n"
    "  elseif pl.rebuild and pl.hadtf then ph[#ph + 1] = 'tf'; ph[#ph + 1] = string.format('%.0f', pl.tf) end\n"
    "  if pl.tnw or (pl.rebuild and pl.hadtn) then ph[#ph + 1] = 'tn'; ph[#ph + 1] = pl.tn and string.format('%.0f', pl.tn) or '' end\n"
    "  if pl.rebuild then\n"
    "    redis.call('HSET', pl.kp, 'v', ph[2]) -- (a write before the HDEL: OOM is checked here)\n"
    "    sliced('HDEL', pl.kp, pl.del)\n"
    "  end\n"
    "  if #ph > 0 then redis.call('HSET', pl.kp, unpack(ph)) end\n"
    "end\n"
    "for _, pl in ipairs(plans) do\n"
    "  if #pl.old > 0 then\n"
    "    redis.call('HDEL', pl.kd, unpack(pl.old))\n"
    "    if pl.wasleg then redis.call('ZREM', pl.kt, unpack(pl.old)) end\n"
    "  end\n"
    "  pl.res[1] = #pl.old\n"
    "  if #pl.drop > 0 then sliced('HDEL', pl.kp, pl.drop) end\n"
    "  local hd, hc, lg = {}, {}, {}\n"
    "  if pl.apply then\n"
    "    for e, ev in ipairs(pl.evs) do\n"
    "      local h = ev.credit and hc or hd\n"
    "      local r = ev.credit and '\\3' .. ev.dig or '\\5' .. string.sub(ev.dig, 1, 8) .. zz(ev.at)\n"
    "      if ev.os then\n"
    "        local c = 2 * tonumber(string.sub(ev.src, 2)) + (string.sub(ev.src, 1, 1) == 'c' and 1 or 0)\n"
    "        -- (a credit's time is 0: its record in :c is never trimmed)\n"
    "        r = '\\6' .. string.sub(ev.dig, 1, 8) .. zz(ev.credit and 0 or ev.at) .. zz(c) .. zz(ev.off)\n"
    "      end\n"
    "      h[#h + 1] = ev.id; h[#h + 1] = r\n"
    "      for i = ev.l0, ev.l0 + ev.nl - 1 do lg[#lg + 1] = ARGV[i] end\n"
    "      pl.res[#pl.res + 1] = 0; pl.res[#pl.res + 1] = string.format('%.0f', pl.v + e)\n"
    "    end\n"
    "  end\n"
    "  if #hd > 0 then redis.call('HSET', pl.kd, unpack(hd)) end\n"
    "  if #hc > 0 then redis.call('HSET', pl.kc, unpack(hc)) end\n"
    "  if #lg > 0 then\n"
    "    local len = redis.call('RPUSH', pl.kl, unpack(lg))\n"
    "    if lmax > 0 and len > lmax then redis.call('LTRIM', pl.kl, -lmax, -1) end\n"
    "  end\n"
    "end\n"
    "for _, ok in ipairs(owk) do sliced('HSET', ok, ow[ok]) end\n"
    "for _, f in ipairs(aggf) do\n"
    "  local g = agg[f]\n"
    "  if g.big then\n"
    "    for _, d in ipairs(g.raw) do redis.call('HINCRBY', KEYS[1], f, d) end\n"
    "  else\n"
    "    redis.call('HINCRBY', KEYS[1], f, string.format('%.0f', g.sum))\n"
    "  end\n"
    "end\n"
    "return out\n";


/* An output this process wrote to <prefix>o:<source>, to drop once its block is committed. */
struct owritten {
    int64_t off;         /* the event's offset */
    size_t field, flen;  /* its field: offset in its source's fields, length */
};

/* The outputs noted for one source (OUTPUTS AFTER THE COMMIT). */
struct osource {
    char name[16];       /* "t3" */
    struct owritten *e;  /* in the order noted */
    size_t n, cap;
    int64_t min_off;     /* the lowest offset among them (INT64_MAX: none) */
    buf fields;          /* their fields, one after the other */
};

/* Lanes of the apply's transactions (THE APPLY, lanes): a fetch of at least
 * store.lane_min customers spreads them over LANES connections by a hash of
 * the id, each watching and writing its own in its own MULTI/EXEC. */
#define LANES 2
/* The customers a fetch needs to use them: Redis 7.0's WATCH of n keys costs
 * ~n^2 (each key is checked against the connection's watched ones) while each
 * more lane costs its own HINCRBY per aggregate field (~60 per transaction);
 * two lanes pay from ~250 customers (measured: docs/design.md). */
#define LANE_MIN 256

struct store {
    redisContext *c;     /* lane 0: every call but the other lanes' share of a fetch and its applies */
    redisContext *lc[LANES]; /* lanes 1.. (lc[0] unused): connected when a fetch first needs them */
    size_t lane_min;     /* customers a fetch needs to be spread over the lanes (store_set_lane_min) */
    bool readonly;       /* a tool's connection: no script, no layout marker, no write */
    char url[512];
    char prefix[80];
    int64_t retention_ms;
    int64_t ledger_max;
    char sha[41];        /* of apply_script */
    store_source *committed; /* what the caller said is committed (store_committed) */
    size_t ncommitted, capcommitted;
    struct codec *codec; /* decodes ledger entries (store_ledger); created on first use */
    int64_t now_ms;      /* the wall clock the apply's trim uses; 0: the real one (store_set_now) */
    buf cmd;             /* the command being written (argvec), reused from call to call */
    struct store_op *ops; /* calls sent and not yet received, oldest at opshead (store.h: SPLIT CALLS) */
    size_t opshead, nops, capops;
    size_t lost;         /* sends whose replies went with a dropped connection: their recv fails */
    struct program_ref *progs; /* programs known in <prefix>ledger_programs (ledger entries) */
    size_t nprogs, capprogs;
    buf txpo, txdrop;    /* a transaction's po value and HDEL command being built */
    bool watching;       /* a fetch's WATCH is in force (not yet ended by EXEC or UNWATCH) */
    unsigned wmask;      /* the lanes that WATCH is in force on */
    int wlanes;          /* the lanes its customers are spread over (1: all on lane 0) */
    bool tx_open;        /* an apply's MULTI is sent and its EXEC not yet (on the lanes of txmask) */
    unsigned txmask;     /* the lanes whose MULTI is open */
    int qlane;           /* the lane commands are queued on (cur()); 0 outside an apply's queuing */
    unsigned wepoch;     /* counts the fetches that sent a WATCH: the one in force is the last */
    bool wready;         /* wt holds what the fetch of the WATCH in force read */
    struct wtable *wt;   /* that fetch's state, per customer (THE APPLY: transactions) */
    struct aggsums *txa[LANES]; /* each lane's open transaction's report deltas, summed over its sends
                                 * (HINCRBY at its EXEC) */
    struct osource *osrc; /* per source, outputs written to <prefix>o:<source> and not yet dropped
                           * (OUTPUTS AFTER THE COMMIT): HDEL'd by the first fetch after their
                           * block's commit */
    size_t nosrc, caposrc;
    char (*oscan)[16];   /* sources whose leftovers (an earlier process's) were looked for */
    size_t noscan, caposcan;
};

/* ---- connection ------------------------------------------------------------------- */

/* Whether a Redis error reply may go away by itself (retry later) rather
 * than need someone to act (permissions, memory, a replica, a script bug):
 * LOADING (restart, dataset loading), TRYAGAIN / CLUSTERDOWN / MASTERDOWN
 * (failover in progress), BUSY (another script runs; it ends or is killed).
 * Everything else, known or not, is permanent: NOPERM, NOAUTH, WRONGPASS,
 * OOM, READONLY, ERR (script errors), WRONGTYPE, NOSCRIPT after a reload... */
static bool transient_reply(const char *msg)
{
    static const char *const codes[] = {"LOADING", "TRYAGAIN", "BUSY", "MASTERDOWN", "CLUSTERDOWN", NULL};
    size_t n = strcspn(msg, " ");
    for (const char *const *c = codes; *c; c++)
        if (strlen(*c) == n && !strncmp(msg, *c, n))
            return true;
    return false;
}

/* The return code for a failed call: a lost connection or a transient reply
 * is STORE_TRANSIENT, anything else STORE_PERMANENT. */
static int reply_class(const redisReply *r)
{
    if (!r || r->type != REDIS_REPLY_ERROR || transient_reply(r->str ? r->str : ""))
        return STORE_TRANSIENT;
    return STORE_PERMANENT;
}

/* 0 if r is a reply and not an error; else frees r, names what failed in err
 * and returns STORE_TRANSIENT or STORE_PERMANENT. */
static int command_ok(redisContext *c, redisReply *r, const char *what, char *err, size_t errlen)
{
    if (!r) {
        snprintf(err, errlen, "redis %s: %s", what, c->errstr[0] ? c->errstr : "connection lost");
        return STORE_TRANSIENT;
    }
    if (r->type == REDIS_REPLY_ERROR) {
        int rc = reply_class(r);
        snprintf(err, errlen, "redis %s: %s", what, r->str);
        freeReplyObject(r);
        return rc;
    }
    return 0;
}

/* Load the script (again after a restart or SCRIPT FLUSH) and keep its SHA. */
static int load_scripts(store *s, char *err, size_t errlen)
{
    const char *texts[] = {apply_script};
    char *shas[] = {s->sha};
    for (int i = 0; i < 1; i++) {
        redisReply *r = redisCommand(s->c, "SCRIPT LOAD %s", texts[i]);
        int rc = command_ok(s->c, r, "SCRIPT LOAD", err, errlen);
        if (rc)
            return rc;
        snprintf(shas[i], sizeof(s->sha), "%s", r->str ? r->str : "");
        freeReplyObject(r);
    }
    return 0;
}

/* Refuse a Redis that may evict Fidelio's keys: an evicted profile, dedupe
 * record or ledger is lost points, silently. noeviction (writes fail with OOM
 * instead: a clear error) and volatile-* (they evict only keys with a TTL;
 * Fidelio never sets one) are safe; allkeys-* are not. Read with INFO, which
 * a least-privilege ACL user can be granted without CONFIG. */
static int check_eviction_policy(store *s, char *err, size_t errlen)
{
    redisReply *r = redisCommand(s->c, "INFO memory");
    if (!r) {
        snprintf(err, errlen, "redis INFO memory: %s", s->c->errstr[0] ? s->c->errstr : "connection lost");
        return -1;
    }
    if (r->type != REDIS_REPLY_STRING) {
        snprintf(err, errlen,
                 "redis INFO memory: %s (fidelio reads maxmemory_policy with INFO at start-up to make sure Redis "
                 "never evicts its keys: allow the INFO command)",
                 r->type == REDIS_REPLY_ERROR ? r->str : "unexpected reply");
        int rc = r->type == REDIS_REPLY_ERROR ? reply_class(r) : STORE_PERMANENT; /* NOPERM: permanent */
        freeReplyObject(r);
        return rc;
    }
    const char *p = strstr(r->str, "maxmemory_policy:");
    char policy[64] = "";
    if (p)
        snprintf(policy, sizeof(policy), "%.*s", (int)strcspn(p + 17, "\r\n"), p + 17);
    freeReplyObject(r);
    if (!policy[0]) {
        snprintf(err, errlen, "redis INFO memory does not name maxmemory_policy: cannot make sure Redis never "
                              "evicts fidelio's keys");
        return -1;
    }
    if (!strcmp(policy, "noeviction") || !strncmp(policy, "volatile-", 9))
        return 0;
    snprintf(err, errlen,
             "redis maxmemory-policy is %s: Redis may evict fidelio's keys (profiles, dedupe records, ledgers) "
             "and lose points silently; set maxmemory-policy noeviction (redis.conf, or CONFIG SET "
             "maxmemory-policy noeviction) and give Redis enough maxmemory",
             policy);
    return -1;
}

/* Split the user info of a URL ("user:password@", ":password@" or
 * "password@" before the host or the socket path) into user and password.
 * Returns where the rest of the URL starts. */
static const char *split_userinfo(const char *u, char *user, size_t ulen, char *password, size_t plen)
{
    user[0] = password[0] = '\0';
    const char *at = strrchr(u, '@');
    if (!at)
        return u;
    const char *colon = memchr(u, ':', (size_t)(at - u));
    if (colon) {
        snprintf(user, ulen, "%.*s", (int)(colon - u), u);
        snprintf(password, plen, "%.*s", (int)(at - colon - 1), colon + 1);
    } else {
        snprintf(password, plen, "%.*s", (int)(at - u), u);
    }
    return at + 1;
}

/* Connect *out to s->url, authenticate (AUTH [user] password) and select
 * the database: 0, or an error code with err (*out NULL or to be freed). */
static int open_conn(store *s, redisContext **out, char *err, size_t errlen)
{
    struct timeval tv = {2, 0};
    char host[256] = "127.0.0.1", user[256], password[256], shown[512];
    int port = 6379, db = 0, rc;
    config_mask_url(s->url, shown, sizeof(shown));
    if (!strncmp(s->url, "unix://", 7)) {
        char path[400];
        snprintf(path, sizeof(path), "%s", split_userinfo(s->url + 7, user, sizeof(user), password, sizeof(password)));
        char *q = strchr(path, '?');
        if (q) {
            *q = '\0';
            if (!strncmp(q + 1, "db=", 3))
                db = atoi(q + 4);
        }
        *out = redisConnectUnixWithTimeout(path, tv);
    } else {
        const char *h = split_userinfo(s->url + 8, user, sizeof(user), password, sizeof(password));
        size_t hl = strcspn(h, ":/");
        if (hl)
            snprintf(host, sizeof(host), "%.*s", (int)hl, h);
        if (h[hl] == ':')
            port = atoi(h + hl + 1);
        const char *slash = strchr(h, '/');
        if (slash && slash[1])
            db = atoi(slash + 1);
        *out = redisConnectWithTimeout(host, port, tv);
    }
    redisContext *c = *out;
    if (!c || c->err) {
        snprintf(err, errlen, "redis %s: %s", shown, c ? c->errstr : "out of memory");
        if (c)
            redisFree(c);
        *out = NULL;
        return STORE_TRANSIENT;
    }
    if (replies_attach(c) != 0) {
        snprintf(err, errlen, "redis %s: out of memory", shown);
        redisFree(c);
        *out = NULL;
        return STORE_PERMANENT;
    }
    struct timeval cmd_tv = {5, 0};
    redisSetTimeout(c, cmd_tv);
    redisReply *r;
    if (password[0]) {
        r = user[0] ? redisCommand(c, "AUTH %s %s", user, password) : redisCommand(c, "AUTH %s", password);
        /* the reply names no secret; say which user, never the password */
        char what[800];
        snprintf(what, sizeof(what), "AUTH as %s at %s", user[0] ? user : "default", shown);
        if ((rc = command_ok(c, r, what, err, errlen)))
            return rc;
        freeReplyObject(r);
    }
    if (db) {
        r = redisCommand(c, "SELECT %d", db);
        if ((rc = command_ok(c, r, "SELECT", err, errlen)))
            return rc;
        freeReplyObject(r);
    }
    return 0;
}

/* THE AGGREGATES A HASHTABLE (store.h): a field of <prefix>aggregates whose
 * value is longer than any hash-max-listpack-value in use (64 by default,
 * 1024 recommended for memory), so that Redis keeps the hash as a hashtable.
 * As a listpack (up to hash-max-listpack-entries fields, 512 in Redis 7.0:
 * a namespace with less than ~40 days of event time at 12 rules) each HINCRBY
 * scans it for its field: 4.9-7.2 us per call at 412 fields against
 * 0.27-0.31 as a hashtable (redis-benchmark, README Performance, "Redis CPU
 * per event, fifth step"), and every transaction sends dozens. */
#define AGG_HASHTABLE_FIELD "hashtable"
#define AGG_DOTS10 ".........."
#define AGG_DOTS100                                                                                                    \
    AGG_DOTS10 AGG_DOTS10 AGG_DOTS10 AGG_DOTS10 AGG_DOTS10 AGG_DOTS10 AGG_DOTS10 AGG_DOTS10 AGG_DOTS10 AGG_DOTS10
/* The field's value: what it is for, padded past 1,100 bytes. */
static const char agg_hashtable_value[] =
    "fidelio: longer than hash-max-listpack-value, so that Redis keeps this hash a hashtable (HINCRBY without a "
    "scan; src/store.h)" AGG_DOTS100 AGG_DOTS100 AGG_DOTS100 AGG_DOTS100 AGG_DOTS100 AGG_DOTS100 AGG_DOTS100
        AGG_DOTS100 AGG_DOTS100 AGG_DOTS100;
_Static_assert(sizeof(agg_hashtable_value) > 1100, "longer than hash-max-listpack-value 1024");

/* Write the field (HSETNX: once per namespace; a listpack hash becomes a
 * hashtable at once). For speed only: a refusal (the hash of another type,
 * OOM, an ACL without HSETNX) is left to the applies, which meet it as
 * before; only a lost connection fails. */
static int agg_hashtable(store *s, char *err, size_t errlen)
{
    redisReply *r = redisCommand(s->c, "HSETNX %saggregates %s %s", s->prefix, AGG_HASHTABLE_FIELD,
                                 agg_hashtable_value);
    if (!r) {
        snprintf(err, errlen, "redis HSETNX (aggregates): %s", s->c->errstr[0] ? s->c->errstr : "connection lost");
        return STORE_TRANSIENT;
    }
    freeReplyObject(r);
    return 0;
}

/* Connect (open_conn), load the scripts and check the layout marker (a tool
 * only reads it). */
static int connect_url(store *s, char *err, size_t errlen)
{
    int rc = open_conn(s, &s->c, err, errlen);
    if (rc)
        return rc;
    redisReply *r;
    if ((rc = check_eviction_policy(s, err, errlen)) != 0) {
        redisFree(s->c); /* not usable: the next call connects (and checks) again */
        s->c = NULL;
        return rc; /* an evicting policy is -1 (transient): it can be fixed at run time */
    }
    if (!s->readonly) {
        if ((rc = load_scripts(s, err, errlen)))
            return rc;
        /* the layout marker: set if absent, refuse another layout */
        r = redisCommand(s->c, "SET %slayout %d NX", s->prefix, STORE_LAYOUT_VERSION);
        if ((rc = command_ok(s->c, r, "SET (layout marker)", err, errlen)))
            return rc;
        bool created = r->type == REDIS_REPLY_STATUS;
        freeReplyObject(r);
        /* a new namespace keeps its report aggregates from the first event on */
        if (created) {
            r = redisCommand(s->c, "HSETNX %saggregates complete 1", s->prefix);
            if ((rc = command_ok(s->c, r, "HSETNX (aggregates)", err, errlen)))
                return rc;
            freeReplyObject(r);
        }
    }
    r = redisCommand(s->c, "GET %slayout", s->prefix);
    if ((rc = command_ok(s->c, r, "GET (layout marker)", err, errlen)))
        return rc;
    /* layouts 1 to 7 are upgraded in place by run (see store.h); a tool reads them as they are */
    if (r->type == REDIS_REPLY_STRING && r->len > 0 && r->len < 4 && strspn(r->str, "0123456789") == r->len &&
        r->str[0] != '0' && atoi(r->str) < STORE_LAYOUT_VERSION) {
        int from = atoi(r->str);
        freeReplyObject(r);
        if (s->readonly)
            return 0;
        r = redisCommand(s->c, "SET %slayout %d", s->prefix, STORE_LAYOUT_VERSION);
        if ((rc = command_ok(s->c, r, "SET (layout marker)", err, errlen)))
            return rc;
        freeReplyObject(r);
        log_info("redis namespace '%s' upgraded from layout %d to %d (see src/store.h)", s->prefix, from,
                 STORE_LAYOUT_VERSION);
        return agg_hashtable(s, err, errlen);
    }
    bool absent = r->type == REDIS_REPLY_NIL && s->readonly; /* nothing written yet: nothing to read either */
    if (!absent && (r->type != REDIS_REPLY_STRING || atoi(r->str) != STORE_LAYOUT_VERSION)) {
        snprintf(err, errlen, "redis key %slayout is %s; this fidelio uses layout %d", s->prefix,
                 r->type == REDIS_REPLY_STRING ? r->str : "not a string", STORE_LAYOUT_VERSION);
        freeReplyObject(r);
        return STORE_PERMANENT;
    }
    freeReplyObject(r);
    return s->readonly ? 0 : agg_hashtable(s, err, errlen);
}

static void load_programs(store *s);

static store *open_store(const char *url, const char *prefix, bool readonly, int64_t retention_ms,
                         int64_t ledger_max, char *err, size_t errlen)
{
    store *s = calloc(1, sizeof(*s));
    if (!s) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    snprintf(s->url, sizeof(s->url), "%s", url);
    snprintf(s->prefix, sizeof(s->prefix), "%s", prefix);
    s->readonly = readonly;
    s->lane_min = LANE_MIN;
    s->retention_ms = retention_ms;
    s->ledger_max = ledger_max;
    if (connect_url(s, err, errlen) != 0) {
        store_close(s);
        return NULL;
    }
    load_programs(s);
    return s;
}

store *store_open(const char *url, const char *prefix, int64_t retention_ms, int64_t ledger_max, char *err,
                  size_t errlen)
{
    return open_store(url, prefix, false, retention_ms, ledger_max, err, errlen);
}

store *store_open_readonly(const char *url, const char *prefix, char *err, size_t errlen)
{
    return open_store(url, prefix, true, 0, 0, err, errlen);
}

static void drop_in_flight(store *s);
static void free_lanes(store *s);
struct wtable;
static void wt_free(struct wtable *t);
struct aggsums;
static void aggsums_free(struct aggsums *g);

static size_t append_drops(store *s);

void store_close(store *s)
{
    if (!s)
        return;
    /* the outputs committed since the last fetch go now (best effort: else the next owner's first
     * fetch after its first commit finds them) */
    if (s->c && !s->c->err && s->nops == s->opshead && !s->tx_open && !s->readonly)
        for (size_t n = append_drops(s); n > 0; n--) {
            redisReply *r;
            if (redisGetReply(s->c, (void **)&r) != REDIS_OK)
                break;
            freeReplyObject(r);
        }
    if (s->c)
        redisFree(s->c);
    free_lanes(s);
    drop_in_flight(s);
    wt_free(s->wt);
    for (int l = 0; l < LANES; l++)
        aggsums_free(s->txa[l]);
    codec_free(s->codec);
    free(s->committed);
    buf_free(&s->cmd);
    buf_free(&s->txpo);
    buf_free(&s->txdrop);
    for (size_t i = 0; i < s->nosrc; i++) {
        free(s->osrc[i].e);
        buf_free(&s->osrc[i].fields);
    }
    free(s->osrc);
    free(s->oscan);
    free(s->progs);
    free(s->ops);
    free(s);
}

int store_reconnect(store *s, char *err, size_t errlen)
{
    if (s->c)
        redisFree(s->c);
    s->c = NULL;
    free_lanes(s);
    drop_in_flight(s);
    s->lost = 0;
    return connect_url(s, err, errlen);
}

/* ---- keys ----------------------------------------------------------------------- */

/* One command written straight in the Redis protocol (RESP): each argument
 * is appended as "$<len>\r\n<bytes>\r\n" as it comes, and the "*<argc>\r\n"
 * header goes into room kept in front once the count is known. hiredis then
 * copies the command once (redisAppendFormattedCommand), where its
 * redisAppendCommandArgv would format every argument again into a new sds. */
#define RESP_HEAD 24
typedef struct argvec {
    buf *text;           /* RESP_HEAD bytes of room, then the arguments (the store's, reused) */
    size_t n;            /* arguments so far */
    int oom;
} argvec;

/* Start a command in the store's command buffer. */
static void argvec_begin(argvec *a, store *s)
{
    a->text = &s->cmd;
    a->n = 0;
    a->oom = 0;
    if (buf_reserve(a->text, 4096) != 0) {
        a->oom = 1;
        return;
    }
    memset(a->text->data, 0, RESP_HEAD);
    a->text->len = RESP_HEAD;
}

static void arg(argvec *a, const char *p, size_t len)
{
    if (a->oom)
        return;
    char tmp[24];
    char *d = fmt_ll(tmp, (long long)len);
    size_t dl = (size_t)(tmp + 24 - d);
    if (buf_reserve(a->text, len + dl + 5) != 0) {
        a->oom = 1;
        return;
    }
    char *w = a->text->data + a->text->len;
    *w++ = '$';
    memcpy(w, d, dl);
    w += dl;
    *w++ = '\r';
    *w++ = '\n';
    if (len)
        memcpy(w, p, len);
    w += len;
    *w++ = '\r';
    *w++ = '\n';
    *w = '\0';
    a->text->len = (size_t)(w - a->text->data);
    a->n++;
}

static void arg_s(argvec *a, const char *p) { arg(a, p ? p : "", p ? strlen(p) : 0); }

/* An integer argument. */
static void arg_ll(argvec *a, long long v)
{
    char tmp[24];
    char *d = fmt_ll(tmp, v);
    arg(a, d, (size_t)(tmp + 24 - d));
}

/* A customer's key: <prefix>{<customer_id>}:<suffix>. */
static void arg_key(argvec *a, const char *prefix, const char *cust, char suffix)
{
    char k[512]; /* prefix (< 80) + customer id (<= EVENT_ID_MAX) + 4 */
    size_t pl = strlen(prefix), cl = strlen(cust);
    if (pl + cl + 4 > sizeof(k)) {
        a->oom = 1;
        return;
    }
    memcpy(k, prefix, pl);
    k[pl] = '{';
    memcpy(k + pl + 1, cust, cl);
    k[pl + 1 + cl] = '}';
    k[pl + 2 + cl] = ':';
    k[pl + 3 + cl] = suffix;
    arg(a, k, pl + cl + 4);
}

/* An argument formatted with printf. */
static void arg_f(argvec *a, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void arg_f(argvec *a, const char *fmt, ...)
{
    char tmp[512];
    va_list ap;
    va_start(ap, fmt);
    int k = vsnprintf(tmp, sizeof(tmp), fmt, ap);
    va_end(ap);
    if (k < 0 || (size_t)k >= sizeof(tmp)) {
        a->oom = 1;
        return;
    }
    arg(a, tmp, (size_t)k);
}

/* Queue the command on s's connection: 0, or -1 when memory ran out. */
static int argvec_send(redisContext *c, argvec *a)
{
    if (a->oom || !a->n)
        return -1;
    char tmp[24];
    char *d = fmt_ll(tmp, (long long)a->n);
    size_t dl = (size_t)(tmp + 24 - d), hl = dl + 3;
    char *h = a->text->data + RESP_HEAD - hl;
    h[0] = '*';
    memcpy(h + 1, d, dl);
    h[1 + dl] = '\r';
    h[2 + dl] = '\n';
    return redisAppendFormattedCommand(c, h, a->text->len - (RESP_HEAD - hl)) == REDIS_OK ? 0 : -1;
}

static void output_field(argvec *a, int64_t off, bool credit, const char *cust, const char *id);
static bool outputs_by_source(const store_apply_req *q);
static void ow_note_req(store *s, const store_apply_req *q);
static void read_scan(store *s, const char *src, const redisReply *r);
static size_t append_drops(store *s);
struct store_op;
static void append_scans(store *s, struct store_op *op);

static redisContext *cur(const store *s);

/* The command of argv[0..argc) (lens[i] bytes each; NULL: NUL-terminated
 * strings) queued on s's connection, as redisAppendCommandArgv does. */
static int append_argv(store *s, int argc, const char *const *argv, const size_t *lens)
{
    argvec a;
    argvec_begin(&a, s);
    for (int i = 0; i < argc; i++)
        arg(&a, argv[i], lens ? lens[i] : strlen(argv[i]));
    return argvec_send(cur(s), &a);
}

static void key(const store *s, const char *customer_id, char suffix, char *out, size_t len)
{
    size_t pl = strlen(s->prefix), cl = strlen(customer_id);
    if (pl + cl + 5 > len) { /* cut short, as snprintf does */
        snprintf(out, len, "%s{%s}:%c", s->prefix, customer_id, suffix);
        return;
    }
    memcpy(out, s->prefix, pl);
    out[pl] = '{';
    memcpy(out + pl + 1, customer_id, cl);
    memcpy(out + pl + 1 + cl, "}:", 2);
    out[pl + cl + 3] = suffix;
    out[pl + cl + 4] = '\0';
}

/* The connection of lane l. */
static redisContext *lane_ctx(const store *s, int l) { return l ? s->lc[l] : s->c; }

/* The connection commands are queued on now (store.qlane: an apply queues each customer's on its
 * lane; everything else goes on lane 0). */
static redisContext *cur(const store *s) { return lane_ctx(s, s->qlane); }

/* The lane of a customer when a fetch spreads its customers over n lanes. */
static int lane_of(const char *customer, int n)
{
    if (n <= 1)
        return 0; /* (no hash: every send without lanes asks) */
    uint32_t h = str_hash(customer);
    return (int)((h ^ (h >> 16)) % (uint32_t)n);
}

/* Close lanes 1.. (with lane 0: whatever was in flight on them is gone too). */
static void free_lanes(store *s)
{
    for (int l = 1; l < LANES; l++)
        if (s->lc[l]) {
            redisFree(s->lc[l]);
            s->lc[l] = NULL;
        }
}

/* Connect the lanes 1.. not connected (a fetch that spreads its customers): 0 or an error code. */
static int connect_lanes(store *s, char *err, size_t errlen)
{
    for (int l = 1; l < LANES; l++) {
        if (s->lc[l] && !s->lc[l]->err)
            continue;
        if (s->lc[l])
            redisFree(s->lc[l]);
        s->lc[l] = NULL;
        int rc = open_conn(s, &s->lc[l], err, errlen);
        if (rc) {
            if (s->lc[l])
                redisFree(s->lc[l]);
            s->lc[l] = NULL;
            return rc;
        }
    }
    return 0;
}

static int get_lane_reply(store *s, int l, redisReply **r, const char *what, char *err, size_t errlen)
{
    redisContext *c = lane_ctx(s, l);
    if (!c || redisGetReply(c, (void **)r) != REDIS_OK || !*r) {
        snprintf(err, errlen, "redis %s: %s", what, c && c->errstr[0] ? c->errstr : "connection lost");
        return STORE_TRANSIENT;
    }
    return 0;
}

static int get_reply(store *s, redisReply **r, const char *what, char *err, size_t errlen)
{
    return get_lane_reply(s, 0, r, what, err, errlen);
}

static int ensure_connected(store *s, char *err, size_t errlen)
{
    if (s->c && !s->c->err)
        return 0;
    return store_reconnect(s, err, errlen);
}

/* ---- split calls (store.h: SPLIT CALLS) ------------------------------------------- */

struct apply_ctx;

/* What a command queued in a transaction is: a script call (x, call) or, x NULL, a plain write. */
typedef struct qtag {
    struct apply_ctx *x;
    size_t call;
    int lane;                /* the connection it was queued on */
} qtag;

/* A customer written by plain commands in a transaction: its requests and the version read. */
typedef struct txw {
    store_apply_req *reqs;
    size_t n;
    int64_t v;
    int lane;                /* its lane: applied when that lane's EXEC runs */
} txw;

/* A send whose replies are still to be read. */
typedef struct store_op {
    bool fetch;
    store_profile *profiles; /* a fetch's arrays (borrowed) */
    size_t nprofiles;
    store_seen *seen;
    size_t nseen;
    struct apply_ctx *x;     /* a script send's calls (owned; a transaction's: its scripted customers') */
    size_t ncalls;
    const char *what;
    bool unwatch, watch, agg; /* a fetch's UNWATCH, WATCH and HGETALL of the aggregates */
    unsigned unwatch_mask, watch_mask; /* the lanes it sent them on */
    int nlanes;              /* a fetch: the lanes its customers are spread over (lane_of) */
    size_t nwatch;           /* the profiles it watched: the first ones */
    unsigned epoch;          /* the WATCH it sent (store.wepoch) */
    bool tx;                 /* an apply queued in a MULTI */
    unsigned opens;          /* the lanes it sent a MULTI on */
    bool execs;              /* the EXECs follow it (on the lanes of exec_mask) */
    unsigned exec_mask;
    size_t nq;               /* commands it queued */
    struct qtag *tags;       /* what each queued command is (owned) */
    size_t captags;
    struct txw *tw;          /* customers it writes with plain commands (owned) */
    size_t ntw;
    size_t nskip;            /* a fetch's HDELs of committed outputs first: replies not read */
    char (*scan)[16];        /* then HGETALL of these sources' <prefix>o:<source> (owned) */
    size_t nscan;
} store_op;

static void apply_ctx_free(struct apply_ctx *x);
static void aggsums_reset(struct aggsums *g);

/* Free what a send owns. */
static void op_free(store_op *op)
{
    apply_ctx_free(op->x);
    free(op->tags);
    free(op->tw);
    free(op->scan);
    op->x = NULL;
    op->tags = NULL;
    op->tw = NULL;
    op->scan = NULL;
}

/* Forget every send still in flight: its recv fails (STORE_TRANSIENT). A
 * transaction and a WATCH end with the connection. */
static void drop_in_flight(store *s)
{
    for (size_t i = s->opshead; i < s->nops; i++) {
        op_free(&s->ops[i]);
        s->lost++;
    }
    s->opshead = s->nops = 0;
    s->watching = s->tx_open = s->wready = false;
    s->wmask = s->txmask = 0;
    s->qlane = 0;
    for (int l = 0; l < LANES; l++)
        aggsums_reset(s->txa[l]);
}

/* A failed read or write: the replies in flight are gone with the connection. */
static void drop_connection(store *s)
{
    if (s->c)
        redisFree(s->c);
    s->c = NULL;
    free_lanes(s);
    drop_in_flight(s);
}

/* Before a send: connected, or (with calls in flight) still connected. */
static int send_ready(store *s, char *err, size_t errlen)
{
    if (s->nops == s->opshead)
        return ensure_connected(s, err, errlen);
    bool lanes_ok = true;
    for (int l = 1; l < LANES; l++)
        lanes_ok &= !s->lc[l] || !s->lc[l]->err;
    if (s->c && !s->c->err && lanes_ok)
        return 0;
    snprintf(err, errlen, "redis: connection lost with calls in flight");
    drop_connection(s);
    return STORE_TRANSIENT;
}

/* After a send's commands were appended: write them out (Redis starts on them while the
 * caller goes on) and queue the send for its recv. Frees op->x on failure. */
static int send_done(store *s, store_op *op, char *err, size_t errlen)
{
    for (int l = 0; l < LANES; l++) {
        redisContext *c = lane_ctx(s, l);
        int done = !c;
        while (!done)
            if (redisBufferWrite(c, &done) != REDIS_OK) {
                snprintf(err, errlen, "redis: %s", c->errstr[0] ? c->errstr : "connection lost");
                op_free(op);
                drop_connection(s);
                return STORE_TRANSIENT;
            }
    }
    if (s->opshead == s->nops)
        s->opshead = s->nops = 0;
    if (s->nops == s->capops) {
        store_op *n = grow_array(s->ops, &s->capops, sizeof(*n), 16);
        if (!n) { /* written but not tracked: its replies cannot be matched any more */
            snprintf(err, errlen, "out of memory");
            op_free(op);
            drop_connection(s);
            return STORE_PERMANENT;
        }
        s->ops = n;
    }
    s->ops[s->nops++] = *op;
    return 0;
}

/* Take the oldest send in flight, which must be a fetch (or a script call). */
static int recv_head(store *s, bool fetch, store_op *op, char *err, size_t errlen)
{
    if (s->opshead == s->nops) {
        if (s->lost) {
            s->lost--;
            snprintf(err, errlen, "redis: connection lost with calls in flight");
            return STORE_TRANSIENT;
        }
        snprintf(err, errlen, "redis: nothing in flight to read (a bug)");
        return STORE_PERMANENT;
    }
    if (s->ops[s->opshead].fetch != fetch) {
        snprintf(err, errlen, "redis: replies read out of order (a bug)");
        return STORE_PERMANENT;
    }
    *op = s->ops[s->opshead++];
    return 0;
}

size_t store_in_flight(const store *s) { return s->nops - s->opshead; }

/* ---- fetch ---------------------------------------------------------------------- */

/* The digest of a request that gives none (tools, tests). */
static const uint8_t no_digest[STORE_DIGEST_LEN];

/* Write v at out as a zigzag varint (Avro's long: at most 10 bytes); its length. The event time
 * of a layout-6 dedupe record. */
static size_t put_varint(char *out, int64_t v)
{
    return (size_t)(varint_put((uint8_t *)out, v) - (uint8_t *)out);
}

static void source_name(bool credit, int32_t partition, char *out, size_t len);
static int64_t committed_of(const store *s, const char *name, size_t len);

/* A layout-6 record of a touchpoint read from a partition ("\6", 8 bytes of digest, then as
 * varints its event time, its source (2 * partition, + 1 for the credits topic) and its offset):
 * true with the source's name ("t3") and the offset. */
static bool record_source(const char *str, size_t len, char src[16], int64_t *off)
{
    if (len < 1 + STORE_RECORD_DIGEST_LEN + 3 || str[0] != 6)
        return false;
    const unsigned char *p = (const unsigned char *)str + 1 + STORE_RECORD_DIGEST_LEN,
                        *end = (const unsigned char *)str + len;
    int64_t t, code;
    if (varint_get(&p, end, VARINT_MAX, &t) || varint_get(&p, end, VARINT_MAX, &code) ||
        varint_get(&p, end, VARINT_MAX, off) || p != end || code < 0 ||
        *off < 0 || code / 2 > INT32_MAX)
        return false;
    source_name(code & 1, (int32_t)(code / 2), src, 16);
    return true;
}

/* Whether a dedupe record carries a content digest: layout 6's "\6" (above) or "\5" + the
 * digest's first 8 bytes + the event time (varint), layout 4's "\4" +
 * digest + event time (a touchpoint's), layout 3's "\3" + digest (a credit's,
 * and touchpoints of layout 3), layout 2's "\2" + digest + outputs (layout 1's are the outputs
 * alone). */
static int record_tag(const char *str, size_t len)
{
    char src[16];
    int64_t off;
    if (record_source(str, len, src, &off))
        return 6;
    if (len > 1 + STORE_RECORD_DIGEST_LEN && len <= 1 + STORE_RECORD_DIGEST_LEN + 10 && str[0] == 5)
        return 5;
    if (len == 1 + STORE_DIGEST_LEN && str[0] == 3)
        return 3;
    if (len > 1 + STORE_DIGEST_LEN && str[0] == 4)
        return 4;
    if (len > STORE_DIGEST_LEN && str[0] == 2)
        return 2;
    return 0;
}

/* Note a failed reply's error in err/rc, keeping the first text and a
 * permanent class over a transient one. */
static void note_error(const redisReply *r, const char *what, int *rc, char *err, size_t errlen)
{
    int cls = reply_class(r);
    if (*rc == 0 || (cls == STORE_PERMANENT && *rc != STORE_PERMANENT)) {
        snprintf(err, errlen, "redis %s: %s", what, r->str);
        *rc = cls;
    }
}

/* ---- the watched fetch (THE APPLY: transactions) --------------------------------- */

/* What a writable fetch read of one customer, under its WATCH: what the apply
 * decides on in C. */
typedef struct wcust {
    size_t id;           /* the customer id: offset in arena */
    bool ok;             /* every read answered, every field well-formed (else: the script decides) */
    bool has_hw, has_tn; /* :p has hw; has tn (absent with hw: a customer of layout <= 3) */
    bool has_tf;         /* :p has tf */
    bool big;            /* :p holds a value longer than STORE_PROFILE_PIECE (a hashtable in Redis) */
    size_t endpiece;     /* 1 + the highest index of the profile's pieces in :p (0: none) */
    size_t prof, proflen; /* the profile as fetched: offset in arena, length (only when in pieces: inpieces) */
    bool inpieces;       /* :p holds it in the pieces this layout writes (not whole, as layout 6 did) */
    bool tn_num;         /* tn is a time ("": the customer has no record in :d) */
    bool l_wrong;        /* :l is not a list: the apply is refused */
    int64_t v, hw, tf, tn, llen;
    size_t po, polen;    /* :p's po: offset in arena */
    int ids;             /* the first id fetched and not found (index into ids), -1 none */
    int last;            /* the last one */
} wcust;

/* An event or credit id fetched and not found in its dedupe hash. */
typedef struct wid {
    size_t off;          /* in arena */
    bool credit;
    int next;            /* the customer's next, -1 */
} wid;

/* A field of the aggregates hash as fetched: its value, or not a number (what the transaction adds: store.txa). */
typedef struct wagg {
    size_t off;
    long long val;
    bool num;
} wagg;

typedef struct wtable {
    buf arena;           /* ids and po values, NUL-terminated */
    wcust *c;
    size_t nc, capc;
    int *slot;           /* customer index + 1 by hash of the id (open addressing), 0: free */
    size_t nslot;
    wid *ids;
    size_t nids, capids;
    wagg *agg;
    size_t nagg, capagg;
    strindex aidx;       /* agg by field name */
    char agg_err[400];   /* why the aggregates hash cannot take HINCRBY ("" it can) */
} wtable;

/* Forget the table's entries (keeping its memory). */
static void wt_reset(wtable *t)
{
    buf_reset(&t->arena);
    t->nc = t->nids = t->nagg = 0;
    t->agg_err[0] = '\0';
    if (t->slot)
        memset(t->slot, 0, t->nslot * sizeof(*t->slot));
    strindex_reset(&t->aidx);
}

static void wt_free(struct wtable *t)
{
    if (!t)
        return;
    buf_free(&t->arena);
    free(t->c);
    free(t->slot);
    free(t->ids);
    free(t->agg);
    strindex_free(&t->aidx);
    free(t);
}

/* Copy n bytes into the arena: their offset, or (size_t)-1 when out of memory. */
static size_t wt_keep(wtable *t, const char *p, size_t n)
{
    size_t off = t->arena.len;
    if (buf_append(&t->arena, p, n) != 0 || buf_append(&t->arena, "", 1) != 0)
        return (size_t)-1;
    return off;
}

static wcust *wt_find(const wtable *t, const char *id)
{
    if (!t || !t->nslot)
        return NULL;
    for (size_t h = str_hash(id) & (t->nslot - 1);; h = (h + 1) & (t->nslot - 1)) {
        int k = t->slot[h];
        if (!k)
            return NULL;
        if (!strcmp(t->arena.data + t->c[k - 1].id, id))
            return &t->c[k - 1];
    }
}

/* The name of t->agg[i] (the key of t->aidx). */
static const char *wt_agg_key(const void *ctx, size_t i)
{
    const wtable *t = ctx;
    return t->arena.data + t->agg[i].off;
}

/* The aggregates field f as fetched: its index in t->agg, or -1. A hash: a
 * send's totals are looked up in a hash of hundreds of fields (a day's field
 * per rule and day). */
static long wt_agg_find(const wtable *t, const char *f)
{
    return strindex_find(&t->aidx, f, wt_agg_key, t);
}

/* Index t->agg[i]: 0 or -1 (out of memory). A field named again (a name
 * with a NUL inside reads as its prefix) is found at its last entry, as
 * agg_check's scan found it. */
static int wt_agg_index(wtable *t, size_t i)
{
    int *sl = strindex_slot(&t->aidx, wt_agg_key(t, i), i + 1, wt_agg_key, t);
    if (!sl)
        return -1;
    *sl = (int)i + 1;
    return 0;
}

/* Room for n customers: 0 or -1. */
static int wt_size(wtable *t, size_t n)
{
    if (n > t->capc) {
        wcust *c = realloc(t->c, n * sizeof(*c));
        if (!c)
            return -1;
        t->c = c;
        t->capc = n;
    }
    size_t ns = 16;
    while (ns < 2 * n)
        ns *= 2;
    if (ns > t->nslot) {
        int *sl = calloc(ns, sizeof(*sl));
        if (!sl)
            return -1;
        free(t->slot);
        t->slot = sl;
        t->nslot = ns;
    }
    return 0;
}

/* Add a customer (once); NULL when out of memory. */
static wcust *wt_add(wtable *t, const char *id)
{
    wcust *w = wt_find(t, id);
    if (w)
        return w;
    if (t->nc == t->capc || t->nc * 2 >= t->nslot)
        return NULL; /* (wt_size made room for every customer of the fetch) */
    size_t off = wt_keep(t, id, strlen(id));
    if (off == (size_t)-1)
        return NULL;
    w = &t->c[t->nc++];
    memset(w, 0, sizeof(*w));
    w->id = off;
    w->ids = w->last = -1;
    size_t h = str_hash(id) & (t->nslot - 1);
    while (t->slot[h])
        h = (h + 1) & (t->nslot - 1);
    t->slot[h] = (int)t->nc;
    return w;
}

/* A whole decimal integer (as Lua's tonumber reads Fidelio's own fields): 0 or -1. */
static int parse_int(const char *p, size_t n, int64_t *v)
{
    char tmp[32];
    if (n == 0 || n >= sizeof(tmp))
        return -1;
    memcpy(tmp, p, n);
    tmp[n] = '\0';
    char *end;
    long long x = strtoll(tmp, &end, 10);
    if (*end)
        return -1;
    *v = x;
    return 0;
}

/* ---- the profile in pieces (layout 7, store.h) ------------------------------------- */

/* The field of piece i of the profile ("p", "p1", "p2", ...): its length. */
static size_t piece_field(char *f, size_t cap, size_t i)
{
    int n = i ? snprintf(f, cap, "p%zu", i) : snprintf(f, cap, "p");
    return n > 0 && (size_t)n < cap ? (size_t)n : cap - 1;
}

/* How many pieces a profile of len bytes is written in: 1 (whole in p) when it is short, or
 * longer than STORE_PROFILE_PIECES_MAX pieces. */
static size_t pieces_of(size_t len)
{
    if (len <= STORE_PROFILE_PIECE || len > STORE_PROFILE_PIECE * STORE_PROFILE_PIECES_MAX)
        return 1;
    return (len + STORE_PROFILE_PIECE - 1) / STORE_PROFILE_PIECE;
}

/* The index of piece field f ("p" 0, "p<n>" n, no leading zero), or -1. */
static long piece_index(const char *f, size_t n)
{
    if (n == 0 || f[0] != 'p')
        return -1;
    if (n == 1)
        return 0;
    if (n > 8 || f[1] == '0')
        return -1;
    long i = 0;
    for (size_t k = 1; k < n; k++) {
        if (f[k] < '0' || f[k] > '9')
            return -1;
        i = 10 * i + (f[k] - '0');
    }
    return i;
}

/* What HGETALL :p read of a customer. */
typedef struct pfields {
    const redisReply *v, *hw, *tf, *po, *tn; /* NULL: absent */
    bool has_p;          /* a profile: field "p" */
    size_t npieces;      /* pieces p, p1, ... present one after the other */
    size_t endpiece;     /* 1 + the highest piece index present (0 none) */
    bool big;            /* a value longer than STORE_PROFILE_PIECE: Redis keeps the hash as a hashtable */
    bool ok;             /* an array of field, value strings */
} pfields;

/* Read an HGETALL :p reply into pf; with profile, the profile's pieces joined
 * (appended). 0, or -1 when out of memory. */
static int pfields_read(const redisReply *r, pfields *pf, buf *profile)
{
    memset(pf, 0, sizeof(*pf));
    if (r->type != REDIS_REPLY_ARRAY || r->elements % 2)
        return 0;
    for (size_t i = 0; i < r->elements; i++)
        if (r->element[i]->type != REDIS_REPLY_STRING)
            return 0;
    pf->ok = true;
    for (size_t i = 0; i < r->elements; i += 2) {
        const redisReply *f = r->element[i], *v = r->element[i + 1];
        if (v->len > STORE_PROFILE_PIECE)
            pf->big = true;
        long k = piece_index(f->str, f->len);
        if (k >= 0) {
            if ((size_t)k + 1 > pf->endpiece)
                pf->endpiece = (size_t)k + 1;
            continue;
        }
#define PF(name, field)                                                                                                \
    if (f->len == sizeof(name) - 1 && !memcmp(f->str, name, f->len))                                                   \
    pf->field = v
        PF("v", v);
        else PF("hw", hw);
        else PF("tf", tf);
        else PF("po", po);
        else PF("tn", tn);
#undef PF
    }
    /* the pieces in order: written in one HSET, they follow one another (one pass) */
    size_t at = 0;
    for (size_t want = 0; want < pf->endpiece; want++) {
        size_t seen = 0;
        for (; seen < r->elements; seen += 2, at = (at + 2) % r->elements)
            if (piece_index(r->element[at]->str, r->element[at]->len) == (long)want)
                break;
        if (seen >= r->elements)
            break;
        pf->npieces++;
        if (want == 0)
            pf->has_p = true;
        if (profile && buf_append(profile, r->element[at + 1]->str, r->element[at + 1]->len) != 0)
            return -1;
    }
    return 0;
}

/* What HGETALL :p says of a customer, for the transaction. */
static void wt_profile(wtable *t, wcust *w, const pfields *pf)
{
    if (!pf->ok)
        return;
    const redisReply *e[6] = {pf->v, NULL, pf->hw, pf->tf, pf->po, pf->tn};
    bool has[6];
    for (int i = 0; i < 6; i++)
        has[i] = e[i] != NULL;
    w->v = w->hw = w->tf = w->tn = 0;
    if ((has[0] && parse_int(e[0]->str, e[0]->len, &w->v)) || (has[2] && parse_int(e[2]->str, e[2]->len, &w->hw)) ||
        (has[3] && parse_int(e[3]->str, e[3]->len, &w->tf)))
        return;
    w->has_hw = has[2];
    w->has_tf = has[3];
    w->has_tn = has[5];
    w->endpiece = pf->endpiece;
    w->big = pf->big;
    w->tn_num = has[5] && e[5]->len > 0;
    if (w->tn_num && parse_int(e[5]->str, e[5]->len, &w->tn))
        return;
    w->po = wt_keep(t, has[4] ? e[4]->str : "", has[4] ? e[4]->len : 0);
    w->polen = has[4] ? e[4]->len : 0;
    if (w->po == (size_t)-1)
        return;
    /* po: entries "<kind><source>/<offset>" NUL "<id>" NUL, whole (else the script reads it) */
    const char *p = t->arena.data + w->po, *end = p + w->polen;
    while (p < end) {
        const char *z1 = p + 1 < end ? memchr(p + 1, '\0', (size_t)(end - p - 1)) : NULL;
        const char *z2 = z1 && z1 + 1 < end ? memchr(z1 + 1, '\0', (size_t)(end - z1 - 1)) : NULL;
        if (!z2)
            return;
        p = z2 + 1;
    }
    w->ok = true;
}

/* Note an id fetched and not found. */
static int wt_unseen(wtable *t, wcust *w, const char *id, bool credit)
{
    if (t->nids == t->capids) {
        wid *n = grow_array(t->ids, &t->capids, sizeof(*n), 256);
        if (!n)
            return -1;
        t->ids = n;
    }
    size_t off = wt_keep(t, id, strlen(id));
    if (off == (size_t)-1)
        return -1;
    wid *d = &t->ids[t->nids];
    d->off = off;
    d->credit = credit;
    d->next = -1;
    if (w->last >= 0)
        t->ids[w->last].next = (int)t->nids;
    else
        w->ids = (int)t->nids;
    w->last = (int)t->nids++;
    return 0;
}

/* The aggregates hash as HGETALL read it. */
static void wt_aggregates(store *s, wtable *t, const redisReply *r)
{
    if (r->type == REDIS_REPLY_ERROR) {
        snprintf(t->agg_err, sizeof(t->agg_err), "%.*s fidelio apply: %saggregates: %s; nothing was written",
                 (int)strcspn(r->str, " "), r->str, s->prefix, r->str);
        return;
    }
    if (r->type != REDIS_REPLY_ARRAY) {
        snprintf(t->agg_err, sizeof(t->agg_err), "ERR fidelio apply: %saggregates unreadable; nothing was written",
                 s->prefix);
        return;
    }
    for (size_t i = 0; i + 1 < r->elements; i += 2) {
        if (t->nagg == t->capagg) {
            wagg *n = grow_array(t->agg, &t->capagg, sizeof(*n), 64);
            if (!n)
                goto oom;
            t->agg = n;
        }
        const redisReply *f = r->element[i], *v = r->element[i + 1];
        wagg *a = &t->agg[t->nagg];
        if ((a->off = wt_keep(t, f->str ? f->str : "", f->str ? f->len : 0)) == (size_t)-1)
            goto oom;
        int64_t x = 0;
        /* as HINCRBY reads it: a whole number that fits in 64 bits */
        a->num = v->str && parse_int(v->str, v->len, &x) == 0 && x > LLONG_MIN && x < LLONG_MAX;
        a->val = x;
        if (wt_agg_index(t, t->nagg) != 0)
            goto oom;
        t->nagg++;
    }
    return;
oom:
    snprintf(t->agg_err, sizeof(t->agg_err), "ERR fidelio apply: out of memory; nothing was written");
}

/* Read one fetch's replies (store_fetch_recv). */
static int fetch_read(store *s, const store_op *op, char *err, size_t errlen)
{
    store_profile *profiles = op->profiles;
    store_seen *seen = op->seen;
    size_t nprofiles = op->nprofiles, nseen = op->nseen;
    int rc = 0;
    /* the table of the WATCH in force, filled when this fetch sent it */
    wtable *t = op->watch && op->epoch == s->wepoch && s->watching ? s->wt : NULL;
    if (t) {
        wt_reset(t);
        if (wt_size(t, op->nwatch) != 0)
            t = NULL; /* (every customer then goes through the script) */
    }
    for (size_t n = 0; n < op->nskip + op->nscan; n++) {
        redisReply *r;
        if (get_reply(s, &r, n < op->nskip ? "HDEL (committed outputs)" : "HGETALL (outputs)", err, errlen) != 0)
            return STORE_TRANSIENT;
        if (n >= op->nskip)
            read_scan(s, op->scan[n - op->nskip], r);
        freeReplyObject(r);
    }
    for (int l = 0; l < LANES; l++)
        for (int n = !!(op->unwatch_mask & (1u << l)) + !!(op->watch_mask & (1u << l)); n > 0; n--) {
            redisReply *r;
            if (get_lane_reply(s, l, &r, "WATCH (fetch)", err, errlen) != 0)
                return STORE_TRANSIENT;
            if (r->type == REDIS_REPLY_ERROR) {
                note_error(r, "WATCH (fetch)", &rc, err, errlen);
                t = NULL;
            }
            freeReplyObject(r);
        }
    for (size_t i = 0; i < nprofiles; i++) {
        redisReply *r;
        const char *what = "HGETALL (fetch profile)";
        int lane = lane_of(profiles[i].customer_id, op->nlanes);
        if (get_lane_reply(s, lane, &r, what, err, errlen) != 0)
            return STORE_TRANSIENT;
        store_profile *p = &profiles[i];
        buf_reset(&p->encoding);
        wcust *w = t && i < op->nwatch ? wt_add(t, p->customer_id) : NULL;
        if (r->type == REDIS_REPLY_ERROR) {
            note_error(r, what, &rc, err, errlen);
        } else {
            pfields pf;
            if (pfields_read(r, &pf, &p->encoding) != 0) {
                snprintf(err, errlen, "out of memory");
                rc = STORE_PERMANENT;
            }
            p->exists = pf.has_p;
            p->version = pf.v ? atoll(pf.v->str) : 0;
            if (!p->exists)
                buf_reset(&p->encoding);
            if (w) {
                wt_profile(t, w, &pf);
                /* the pieces as they are, so the apply rewrites only those that change */
                size_t len = p->encoding.len;
                w->inpieces = p->exists && pf.npieces == pieces_of(len) && pf.npieces == pf.endpiece &&
                              (len <= STORE_PROFILE_PIECE || pf.npieces > 1);
                if (w->inpieces && (w->prof = wt_keep(t, len ? p->encoding.data : "", len)) == (size_t)-1)
                    w->ok = false, w->inpieces = false;
                w->proflen = len;
            }
        }
        freeReplyObject(r);
        if (i < op->nwatch) { /* LLEN :l: when the apply must LTRIM (and that :l is a list) */
            if (get_lane_reply(s, lane, &r, "LLEN (fetch)", err, errlen) != 0)
                return STORE_TRANSIENT;
            if (w && r->type == REDIS_REPLY_INTEGER)
                w->llen = r->integer;
            else if (w) /* not a list (WRONGTYPE): an apply of the customer is refused */
                w->ok = false, w->l_wrong = true;
            freeReplyObject(r);
        }
    }
    size_t nkept = 0; /* records found whose outputs may be kept: in :p (layouts 3-5, credits), in
                       * <prefix>o:<source> (layout 6's "\6": osrc) */
    struct {
        char src[16];
        int64_t off;
    } *osrc = NULL;
    for (size_t i = 0; i < nseen;) {
        /* a run of one customer's ids of one kind: one HMGET of :d (a credit's: :c, then layout 1's :d) */
        size_t j = i + 1;
        while (j < nseen && seen[j].credit == seen[i].credit && !strcmp(seen[j].customer_id, seen[i].customer_id))
            j++;
        for (size_t m = i; m < j; m++) {
            buf_reset(&seen[m].recorded);
            seen[m].seen = seen[m].conflict = seen[m].kept = false;
        }
        for (int n = seen[i].credit ? 2 : 1; n > 0; n--) {
            redisReply *r;
            const char *what = "HMGET (fetch dedupe records)";
            if (get_lane_reply(s, lane_of(seen[i].customer_id, op->nlanes), &r, what, err, errlen) != 0)
                return STORE_TRANSIENT;
            if (r->type == REDIS_REPLY_ERROR || r->type != REDIS_REPLY_ARRAY || r->elements != j - i) {
                if (r->type == REDIS_REPLY_ERROR)
                    note_error(r, what, &rc, err, errlen);
                else if (rc == 0) {
                    snprintf(err, errlen, "redis %s: unexpected reply", what);
                    rc = STORE_PERMANENT;
                }
                freeReplyObject(r);
                continue;
            }
            for (size_t m = i; m < j; m++) {
                store_seen *d = &seen[m];
                const redisReply *e = r->element[m - i];
                /* (a tagged record in :d under a credit's id is a touchpoint's, not layout 1's credit) */
                if (d->seen || e->type != REDIS_REPLY_STRING || (n == 1 && d->credit && record_tag(e->str, e->len)))
                    continue;
                d->seen = true;
                int tag = record_tag(e->str, e->len);
                const char *out = e->str;
                size_t len = e->len;
                if (tag) { /* (layout 6's records keep the digest's first 8 bytes) */
                    size_t dl = tag >= 5 ? STORE_RECORD_DIGEST_LEN : STORE_DIGEST_LEN;
                    d->conflict = memcmp(e->str + 1, d->digest ? d->digest : no_digest, dl) != 0;
                    out += 1 + dl;
                    len = tag == 2 ? len - (1 + STORE_DIGEST_LEN) : 0; /* 4's and 5's event time is no output */
                }
                d->kept = (tag == 3 || tag == 4 || tag == 5 || tag == 6) && !d->conflict;
                if (tag == 6 && d->kept) { /* its outputs wait in <prefix>o:<source> until committed */
                    char src[16];
                    int64_t off;
                    record_source(e->str, e->len, src, &off);
                    int64_t c = committed_of(s, src, strlen(src));
                    if (c >= 0 && off < c)
                        d->kept = false; /* committed: dropped (acknowledged before the commit) */
                    else {
                        if (!osrc && !(osrc = calloc(nseen, sizeof(*osrc)))) {
                            snprintf(err, errlen, "out of memory");
                            rc = STORE_PERMANENT;
                            d->kept = false;
                        } else {
                            memcpy(osrc[m].src, src, sizeof(src));
                            osrc[m].off = off;
                        }
                    }
                }
                nkept += d->kept;
                if (!d->conflict && buf_append(&d->recorded, out, len) != 0) {
                    snprintf(err, errlen, "out of memory");
                    rc = STORE_PERMANENT;
                }
            }
            freeReplyObject(r);
        }
        i = j;
    }
    if (op->agg) {
        redisReply *r;
        if (get_reply(s, &r, "HGETALL (fetch aggregates)", err, errlen) != 0)
            return STORE_TRANSIENT;
        if (t)
            wt_aggregates(s, t, r);
        freeReplyObject(r);
    }
    if (t && rc == 0) {
        for (size_t i = 0; i < nseen; i++) {
            wcust *w = wt_find(t, seen[i].customer_id);
            if (w && !seen[i].seen && wt_unseen(t, w, seen[i].id, seen[i].credit) != 0)
                w->ok = false;
        }
        s->wready = true;
    }
    if (rc != 0 || nkept == 0) {
        free(osrc);
        return rc;
    }
    /* redeliveries (rare): a second round trip for their outputs, kept until committed; only with
     * nothing else in flight (its replies would come after theirs): the caller drops what is */
    if (s->nops > s->opshead) {
        free(osrc);
        snprintf(err, errlen, "redis fetch: redeliveries found while other calls are in flight (read them again)");
        return STORE_TRANSIENT;
    }
    for (size_t i = 0; i < nseen; i++) {
        if (!seen[i].kept)
            continue;
        argvec a;
        argvec_begin(&a, s);
        arg_s(&a, "HGET");
        if (osrc && osrc[i].src[0]) {
            arg_f(&a, "%so:%s", s->prefix, osrc[i].src);
            output_field(&a, osrc[i].off, seen[i].credit, seen[i].customer_id, seen[i].id);
        } else {
            arg_key(&a, s->prefix, seen[i].customer_id, 'p');
            arg_f(&a, "o%c%s", seen[i].credit ? 'c' : 't', seen[i].id);
        }
        argvec_send(s->c, &a);
    }
    free(osrc);
    for (size_t i = 0; i < nseen; i++) {
        if (!seen[i].kept)
            continue;
        redisReply *r;
        const char *what = "HGET (fetch recorded outputs)";
        if (get_reply(s, &r, what, err, errlen) != 0)
            return STORE_TRANSIENT;
        if (r->type == REDIS_REPLY_ERROR)
            note_error(r, what, &rc, err, errlen);
        else if (r->type == REDIS_REPLY_STRING && buf_append(&seen[i].recorded, r->str, r->len) != 0) {
            snprintf(err, errlen, "out of memory");
            rc = STORE_PERMANENT;
        }
        freeReplyObject(r);
    }
    return rc;
}

/* Customers one fetch watches at most (the first ones; the others' applies
 * go through the script): Redis 7.0's WATCH checks each key against every key
 * the connection already watches, so its cost grows with the square of their
 * number (~3 us per event at 500 customers a batch, measured). */
#define WATCH_MAX 512

static int txagg_queue(store *s, struct store_op *op);

/* Queue the HINCRBYs of the transaction open (if any) and its EXEC behind
 * its last send: they run before whatever is sent next (a WATCH must come
 * after it, since EXEC ends every WATCH). 0, or STORE_PERMANENT with err
 * when memory ran out (the connection, and the transaction, went). */
static int tx_close(store *s, char *err, size_t errlen)
{
    if (!s->tx_open)
        return 0;
    const char *argv[] = {"EXEC"};
    store_op *op = &s->ops[s->nops - 1];
    for (int l = 0; l < LANES; l++) {
        if (!(s->txmask & (1u << l)))
            continue;
        s->qlane = l;
        if (txagg_queue(s, op) != 0 || append_argv(s, 1, argv, NULL) != 0) {
            s->qlane = 0;
            snprintf(err, errlen, "out of memory");
            drop_connection(s); /* (Redis discards the MULTI with it) */
            return STORE_PERMANENT;
        }
    }
    s->qlane = 0;
    op->execs = true;
    op->exec_mask = s->txmask;
    /* (a lane that watched and queued nothing keeps its WATCH: the next fetch's UNWATCH ends it) */
    s->wmask &= ~s->txmask;
    s->tx_open = s->wready = false;
    s->watching = s->wmask != 0;
    s->txmask = 0;
    for (int l = 0; l < LANES; l++)
        aggsums_reset(s->txa[l]);
    return 0;
}

int store_fetch_send(store *s, store_profile *profiles, size_t nprofiles, store_seen *seen, size_t nseen, char *err,
                     size_t errlen)
{
    int rc = send_ready(s, err, errlen);
    if (rc)
        return rc;
    store_op op = {.fetch = true, .profiles = profiles, .nprofiles = nprofiles, .seen = seen, .nseen = nseen};
    /* a writable store watches what it reads, for the apply's transaction (THE APPLY) */
    bool watch = !s->readonly && nprofiles > 0;
    if (watch && !s->wt && !(s->wt = calloc(1, sizeof(*s->wt))))
        watch = false;
    argvec a;
    /* many customers: spread over the lanes, each lane's WATCH short. Only with nothing in
     * flight: a customer must be read on the lane its writes in flight went on (its reads then
     * come after them), so while applies are in flight the lanes stay as they are */
    bool idle = s->nops == s->opshead && !s->tx_open;
    int nl = !watch ? 1 : !idle ? (s->wlanes > 1 ? s->wlanes : 1) : s->lane_min > 0 && nprofiles >= s->lane_min ? LANES : 1;
    if (nl > 1 && (rc = connect_lanes(s, err, errlen)) != 0) {
        if (!idle) { /* (not reached: a lane lost with calls in flight fails send_ready) */
            drop_connection(s);
            return rc;
        }
        nl = 1; /* (lane 0 does it all, as before) */
    }
    rc = 0;
    op.nlanes = nl;
    if (watch && (rc = tx_close(s, err, errlen)) != 0)
        return rc;
    /* outputs committed since the last fetch: dropped first (OUTPUTS AFTER THE COMMIT) */
    if (!s->readonly && !s->tx_open) {
        op.nskip = append_drops(s);
        append_scans(s, &op);
    }
    if (watch) {
        op.nwatch = nprofiles < (size_t)WATCH_MAX * (size_t)nl ? nprofiles : (size_t)WATCH_MAX * (size_t)nl;
        for (int l = 0; l < LANES; l++) {
            if (s->wmask & (1u << l)) { /* (a fetch whose batch applied nothing: its WATCH goes) */
                const char *argv[] = {"UNWATCH"};
                s->qlane = l;
                append_argv(s, 1, argv, NULL);
                op.unwatch = true;
                op.unwatch_mask |= 1u << l;
            }
            if (l >= nl)
                continue;
            size_t nk = 0;
            argvec_begin(&a, s);
            arg_s(&a, "WATCH");
            for (size_t i = 0; i < op.nwatch; i++)
                if (lane_of(profiles[i].customer_id, nl) == l) {
                    arg_key(&a, s->prefix, profiles[i].customer_id, 'p');
                    nk++;
                }
            if (nk) {
                argvec_send(lane_ctx(s, l), &a);
                op.watch_mask |= 1u << l;
            }
        }
        s->qlane = 0;
        op.watch = true;
        s->watching = true;
        s->wmask = op.watch_mask;
        s->wlanes = nl;
        s->wready = false;
        op.epoch = ++s->wepoch;
    }
    for (size_t i = 0; i < nprofiles; i++) {
        redisContext *c = lane_ctx(s, lane_of(profiles[i].customer_id, nl));
        argvec_begin(&a, s);
        arg_s(&a, "HGETALL"); /* (the profile's pieces, however many) */
        arg_key(&a, s->prefix, profiles[i].customer_id, 'p');
        argvec_send(c, &a);
        if (i < op.nwatch) {
            argvec_begin(&a, s);
            arg_s(&a, "LLEN");
            arg_key(&a, s->prefix, profiles[i].customer_id, 'l');
            argvec_send(c, &a);
        }
    }
    for (size_t i = 0; i < nseen;) {
        size_t j = i + 1;
        while (j < nseen && seen[j].credit == seen[i].credit && !strcmp(seen[j].customer_id, seen[i].customer_id))
            j++;
        /* a credit's record is in :c; a namespace of layout 1 kept it in :d */
        for (int n = seen[i].credit ? 2 : 1; n > 0; n--) {
            argvec_begin(&a, s);
            arg_s(&a, "HMGET");
            arg_key(&a, s->prefix, seen[i].customer_id, seen[i].credit && n == 2 ? 'c' : 'd');
            for (size_t m = i; m < j; m++)
                arg_s(&a, seen[m].id);
            argvec_send(lane_ctx(s, lane_of(seen[i].customer_id, nl)), &a);
        }
        i = j;
    }
    if (watch) {
        argvec_begin(&a, s);
        arg_s(&a, "HGETALL");
        arg_f(&a, "%saggregates", s->prefix);
        argvec_send(s->c, &a);
        op.agg = true;
    }
    return send_done(s, &op, err, errlen);
}

int store_fetch_recv(store *s, char *err, size_t errlen)
{
    store_op op;
    int rc = recv_head(s, true, &op, err, errlen);
    if (rc)
        return rc;
    rc = fetch_read(s, &op, err, errlen);
    op_free(&op);
    if (rc == STORE_TRANSIENT)
        drop_connection(s);
    return rc;
}

int store_fetch(store *s, store_profile *profiles, size_t nprofiles, store_seen *seen, size_t nseen, char *err,
                size_t errlen)
{
    int rc = store_fetch_send(s, profiles, nprofiles, seen, nseen, err, errlen);
    return rc ? rc : store_fetch_recv(s, err, errlen);
}

/* ---- ledger entries --------------------------------------------------------------- */

/* A ledger entry of layout 5 (store.h, THE LEDGER): LEDGER_BINARY, a flags
 * byte, the customer id and reward id unless the key and the entry say them,
 * then the RewardEvent's fields kind .. occurred_at as Avro encodes them, no
 * reason, and the number of the (program version, digest) pair in
 * <prefix>ledger_programs (0: the two strings follow in full). Layout 4's
 * LEDGER_COMPACT entries (the Avro record less the flagged strings, the
 * digest as a reference into <prefix>digests) and layout 3's plain Avro
 * records are read as before. */
#define LEDGER_COMPACT 0x01       /* layout 4; never an Avro RewardEvent's first byte (odd: a negative length) */
#define LEDGER_BINARY 0x03        /* layout 5; odd too, and not layout 2's JSON '{' */
#define LEDGER_NO_REWARD_ID 0x01  /* reward_id is rules_reward_id(source_event_id, rule_id, customer) */
#define LEDGER_NO_CUSTOMER 0x02   /* customer_id is the key's customer */
#define LEDGER_DIGEST_REF 0x04    /* layout 4: program_digest holds the reference of a <prefix>digests field */

/* A rule program as ledger entries name it, and its number in
 * <prefix>ledger_programs ("<n>" -> version NUL digest, "=" version NUL
 * digest -> "<n>", "next" the last number given). */
typedef struct program_ref {
    char version[EVENT_ID_MAX + 1];
    char digest[EVENT_ID_MAX + 1];
    long long n; /* >= 1; 0: not registered (this process writes the strings in full) */
} program_ref;

/* Fields of a RewardEvent in schema order (schemas/reward_event.avsc). */
enum { RW_REWARD_ID, RW_CUSTOMER, RW_KIND, RW_RULE, RW_POINTS, RW_BALANCE, RW_SOURCE, RW_AT, RW_REASON,
       RW_VERSION, RW_DIGEST, RW_NFIELDS };
static const bool rw_is_string[RW_NFIELDS] = {true, true, false, true, false, false, true, false, true, true, true};

/* Append v as an Avro long. 0 or -1 (out of memory). */
static int avro_put_long(buf *out, int64_t v)
{
    uint8_t b[VARINT_MAX];
    return buf_append(out, b, (size_t)(varint_put(b, v) - b));
}

/* Append s (len bytes) as an Avro string. 0 or -1. */
static int avro_put_string(buf *out, const char *s, size_t len)
{
    return avro_put_long(out, (int64_t)len) || buf_append(out, s, len) ? -1 : 0;
}

/* Split the RewardEvent fields [first, last) encoded (as Avro does) from
 * data on: f[i] points at field i's encoding (a string's: at its length),
 * f[last] where they end (data + n or before); str[i] and len[i] a string's
 * bytes. -1 if they are malformed or a string is longer than EVENT_ID_MAX
 * bytes (reason: EVENT_TEXT_MAX). */
static int rw_split_range(const unsigned char *data, size_t n, int first, int last, const unsigned char **f,
                          const char **str, size_t *len)
{
    const unsigned char *p = data, *end = data + n;
    for (int i = first; i < last; i++) {
        int64_t v;
        f[i] = p;
        if (varint_get(&p, end, VARINT_MAX, &v) != VARINT_OK)
            return -1;
        if (rw_is_string[i]) {
            if (v < 0 || v > (i == RW_REASON ? EVENT_TEXT_MAX : EVENT_ID_MAX) || v > end - p)
                return -1;
            str[i] = (const char *)p;
            len[i] = (size_t)v;
            p += v;
        }
    }
    f[last] = p;
    return 0;
}

/* rw_split_range of every field: -1 unless data is exactly one RewardEvent. */
static int rw_split(const unsigned char *data, size_t n, const unsigned char **f, const char **str, size_t *len)
{
    return rw_split_range(data, n, 0, RW_NFIELDS, f, str, len) == 0 && f[RW_NFIELDS] == data + n ? 0 : -1;
}

/* Room for one more program in the store's table; NULL when out of memory. */
static program_ref *program_slot(store *s)
{
    if (s->nprogs == s->capprogs) {
        program_ref *n = grow_array(s->progs, &s->capprogs, sizeof(*n), 4);
        if (!n)
            return NULL;
        s->progs = n;
    }
    return &s->progs[s->nprogs];
}

/* The number of program (version, digest) in <prefix>ledger_programs,
 * registered on first sight (HGET of its "=" field; else a new number from
 * HINCRBY next, its "<n>" field written before the "=" one with HSETNX, so a
 * number another reader finds always resolves; a race with another instance
 * keeps theirs). 0 when entries must carry the strings in full (a read-only
 * store, calls in flight: asked again at the next entry, a Redis error). */
static long long program_ref_of(store *s, const char *ver, size_t vlen, const char *dig, size_t dlen)
{
    for (size_t i = 0; i < s->nprogs; i++)
        if (strlen(s->progs[i].version) == vlen && !memcmp(s->progs[i].version, ver, vlen) &&
            strlen(s->progs[i].digest) == dlen && !memcmp(s->progs[i].digest, dig, dlen))
            return s->progs[i].n;
    program_ref *d = program_slot(s);
    /* (replies of calls in flight come first: asked again with none in flight. The
     * commands below are synchronous: they must never be sent inside an open MULTI,
     * where they would be queued; an apply that opens one must count as in flight.
     * The table is filled at open and by store_registry_write, so the apply rarely
     * gets here) */
    if (!d || s->readonly || s->nops > s->opshead || s->tx_open || !s->c || vlen > EVENT_ID_MAX ||
        dlen > EVENT_ID_MAX)
        return 0;
    char val[2 * EVENT_ID_MAX + 2], fld[2 * EVENT_ID_MAX + 3];
    memcpy(val, ver, vlen);
    val[vlen] = '\0';
    memcpy(val + vlen + 1, dig, dlen);
    size_t vallen = vlen + 1 + dlen;
    fld[0] = '=';
    memcpy(fld + 1, val, vallen);
    long long n = 0;
    redisReply *r = redisCommand(s->c, "HGET %sledger_programs %b", s->prefix, fld, vallen + 1);
    if (r && r->type == REDIS_REPLY_STRING) {
        n = strtoll(r->str, NULL, 10);
    } else if (r && r->type == REDIS_REPLY_NIL) {
        freeReplyObject(r);
        r = redisCommand(s->c, "HINCRBY %sledger_programs next 1", s->prefix);
        long long m = r && r->type == REDIS_REPLY_INTEGER ? r->integer : 0;
        freeReplyObject(r);
        r = m > 0 ? redisCommand(s->c, "HSETNX %sledger_programs %lld %b", s->prefix, m, val, vallen) : NULL;
        bool written = r && r->type == REDIS_REPLY_INTEGER && r->integer == 1;
        freeReplyObject(r);
        r = written ? redisCommand(s->c, "HSETNX %sledger_programs %b %lld", s->prefix, fld, vallen + 1, m) : NULL;
        if (r && r->type == REDIS_REPLY_INTEGER && r->integer == 1) {
            n = m;
        } else if (r && r->type == REDIS_REPLY_INTEGER) { /* another instance registered it meanwhile */
            freeReplyObject(r);
            r = redisCommand(s->c, "HGET %sledger_programs %b", s->prefix, fld, vallen + 1);
            n = r && r->type == REDIS_REPLY_STRING ? strtoll(r->str, NULL, 10) : 0;
        }
    }
    freeReplyObject(r); /* (NULL-safe) */
    if (n <= 0)
        return 0; /* in full, and asked again next time */
    memcpy(d->version, ver, vlen);
    d->version[vlen] = '\0';
    memcpy(d->digest, dig, dlen);
    d->digest[dlen] = '\0';
    d->n = n;
    s->nprogs++;
    return n;
}

/* The program numbered n in <prefix>ledger_programs (the table first, then
 * HGET). NULL with why when it is not there. */
static const program_ref *program_by_ref(store *s, long long n, char *why, size_t whylen)
{
    for (size_t i = 0; i < s->nprogs; i++)
        if (s->progs[i].n == n)
            return &s->progs[i];
    program_ref *d = program_slot(s);
    if (!d) {
        snprintf(why, whylen, "out of memory");
        return NULL;
    }
    redisReply *r = redisCommand(s->c, "HGET %sledger_programs %lld", s->prefix, n);
    const char *nul = r && r->type == REDIS_REPLY_STRING ? memchr(r->str, '\0', r->len) : NULL;
    if (!nul || (size_t)(nul - r->str) > EVENT_ID_MAX || r->len - (size_t)(nul - r->str) - 1 > EVENT_ID_MAX) {
        snprintf(why, whylen, "program %lld is not in %sledger_programs%s%s", n, s->prefix,
                 r && r->type == REDIS_REPLY_ERROR ? ": " : "", r && r->type == REDIS_REPLY_ERROR ? r->str : "");
        freeReplyObject(r);
        return NULL;
    }
    size_t vlen = (size_t)(nul - r->str), dlen = r->len - vlen - 1;
    memcpy(d->version, r->str, vlen);
    d->version[vlen] = '\0';
    memcpy(d->digest, nul + 1, dlen);
    d->digest[dlen] = '\0';
    d->n = n;
    freeReplyObject(r);
    return &s->progs[s->nprogs++];
}

/* Read the programs of <prefix>ledger_programs into the store's table (the
 * hash holds one pair per program the namespace ran: the pipeline then needs
 * no round trip to number them). Best effort: a failure leaves the table
 * empty, filled later entry by entry. */
static void load_programs(store *s)
{
    redisReply *r = redisCommand(s->c, "HGETALL %sledger_programs", s->prefix);
    for (size_t i = 0; r && r->type == REDIS_REPLY_ARRAY && i + 1 < r->elements; i += 2) {
        const redisReply *f = r->element[i], *v = r->element[i + 1];
        if (f->type != REDIS_REPLY_STRING || v->type != REDIS_REPLY_STRING || f->len == 0 || f->str[0] < '1' ||
            f->str[0] > '9')
            continue; /* only "<n>" -> version NUL digest */
        const char *nul = memchr(v->str, '\0', v->len);
        size_t vlen = nul ? (size_t)(nul - v->str) : 0;
        program_ref *d = nul ? program_slot(s) : NULL;
        if (!d || vlen > EVENT_ID_MAX || v->len - vlen - 1 > EVENT_ID_MAX)
            continue;
        memcpy(d->version, v->str, vlen);
        d->version[vlen] = '\0';
        memcpy(d->digest, nul + 1, v->len - vlen - 1);
        d->digest[v->len - vlen - 1] = '\0';
        d->n = strtoll(f->str, NULL, 10);
        s->nprogs++;
    }
    freeReplyObject(r); /* (NULL-safe) */
}

/* Append the ledger entry of customer to out: a binary one (layout 5) when
 * entry is a RewardEvent (as the pipeline gives), the bytes as they are
 * otherwise (tests). 0 or -1 (out of memory). */
static int ledger_binary(store *s, const char *customer, const char *entry, size_t n, buf *out)
{
    const unsigned char *f[RW_NFIELDS + 1];
    const char *str[RW_NFIELDS] = {0};
    size_t len[RW_NFIELDS] = {0};
    if (n == 0 || rw_split((const unsigned char *)entry, n, f, str, len) != 0)
        return buf_append(out, entry, n);
    unsigned char flags = 0;
    char rid[EVENT_ID_MAX + 1], src[EVENT_ID_MAX + 1], rule[EVENT_ID_MAX + 1];
    memcpy(src, str[RW_SOURCE], len[RW_SOURCE]); /* (rw_split: at most EVENT_ID_MAX bytes) */
    src[len[RW_SOURCE]] = '\0';
    memcpy(rule, str[RW_RULE], len[RW_RULE]);
    rule[len[RW_RULE]] = '\0';
    bool own = len[RW_CUSTOMER] == strlen(customer) && !memcmp(str[RW_CUSTOMER], customer, len[RW_CUSTOMER]);
    if (own)
        flags |= LEDGER_NO_CUSTOMER;
    rules_reward_id(src, rule, customer, rid);
    if (own && len[RW_REWARD_ID] == strlen(rid) && !memcmp(str[RW_REWARD_ID], rid, len[RW_REWARD_ID]))
        flags |= LEDGER_NO_REWARD_ID;
    long long prog = program_ref_of(s, str[RW_VERSION], len[RW_VERSION], str[RW_DIGEST], len[RW_DIGEST]);
    unsigned char head[2] = {LEDGER_BINARY, flags};
    int rc = buf_append(out, head, 2);
    if (!(flags & LEDGER_NO_REWARD_ID))
        rc = rc || buf_append(out, f[RW_REWARD_ID], (size_t)(f[RW_CUSTOMER] - f[RW_REWARD_ID]));
    if (!(flags & LEDGER_NO_CUSTOMER))
        rc = rc || buf_append(out, f[RW_CUSTOMER], (size_t)(f[RW_KIND] - f[RW_CUSTOMER]));
    rc = rc || buf_append(out, f[RW_KIND], (size_t)(f[RW_REASON] - f[RW_KIND])) || avro_put_long(out, prog);
    if (prog == 0)
        rc = rc || buf_append(out, f[RW_VERSION], (size_t)(f[RW_NFIELDS] - f[RW_VERSION]));
    return rc ? -1 : 0;
}

/* The RewardEvent's Avro bytes of a binary entry (layout 5) of customer,
 * its reason empty, into avro; the flags in *flags. 0, or -1 with why. */
static int ledger_binary_avro(store *s, const unsigned char *e, size_t n, buf *avro, unsigned char *flags,
                              char *why, size_t whylen)
{
    const unsigned char *p = e + 2, *end = e + n, *f[RW_NFIELDS + 1];
    const char *str[RW_NFIELDS] = {0};
    size_t len[RW_NFIELDS] = {0};
    *flags = e[1];
    int rc = 0;
    for (int i = RW_REWARD_ID; i <= RW_CUSTOMER; i++) {
        bool absent = *flags & (i == RW_REWARD_ID ? LEDGER_NO_REWARD_ID : LEDGER_NO_CUSTOMER);
        if (absent) {
            rc = rc || avro_put_string(avro, "", 0);
        } else if (rw_split_range(p, (size_t)(end - p), i, i + 1, f, str, len) == 0) {
            rc = rc || buf_append(avro, p, (size_t)(f[i + 1] - p));
            p = f[i + 1];
        } else {
            snprintf(why, whylen, "a malformed binary entry");
            return -1;
        }
    }
    int64_t prog = -1;
    if (rw_split_range(p, (size_t)(end - p), RW_KIND, RW_REASON, f, str, len) == 0) {
        p = f[RW_REASON];
        if (varint_get(&p, end, VARINT_MAX, &prog) != VARINT_OK || (prog > 0 && p != end))
            prog = -1;
    }
    if (prog < 0) {
        snprintf(why, whylen, "a malformed binary entry");
        return -1;
    }
    rc = rc || buf_append(avro, f[RW_KIND], (size_t)(f[RW_REASON] - f[RW_KIND])) || avro_put_string(avro, "", 0);
    if (prog == 0) { /* version and digest in full; codec_decode_avro checks them */
        rc = rc || buf_append(avro, p, (size_t)(end - p));
    } else {
        const program_ref *pr = program_by_ref(s, prog, why, whylen);
        if (!pr)
            return -1;
        rc = rc || avro_put_string(avro, pr->version, strlen(pr->version)) ||
             avro_put_string(avro, pr->digest, strlen(pr->digest));
    }
    if (rc)
        snprintf(why, whylen, "out of memory");
    return rc ? -1 : 0;
}

/* Decode a ledger entry of customer into rec: a binary one (layout 5,
 * reason empty), a compact one (layout 4) or an Avro RewardEvent (layout
 * 3). 0, or -1 with why. */
static int ledger_decode(store *s, const char *customer, const char *e, size_t n, codec_record *rec, char *why,
                         size_t whylen)
{
    if (n < 2 || (e[0] != LEDGER_COMPACT && e[0] != LEDGER_BINARY))
        return codec_decode_avro(s->codec, SCHEMA_REWARD, e, n, rec, why, whylen) == EVENT_OK ? 0 : -1;
    unsigned char flags = (unsigned char)e[1];
    if (e[0] == LEDGER_BINARY) {
        buf avro = {0};
        int rc = ledger_binary_avro(s, (const unsigned char *)e, n, &avro, &flags, why, whylen);
        if (rc == 0 && codec_decode_avro(s->codec, SCHEMA_REWARD, avro.data, avro.len, rec, why, whylen) != EVENT_OK)
            rc = -1;
        buf_free(&avro);
        if (rc)
            return -1;
        flags &= (unsigned char)~LEDGER_DIGEST_REF;
    } else if (codec_decode_avro(s->codec, SCHEMA_REWARD, e + 2, n - 2, rec, why, whylen) != EVENT_OK) {
        return -1;
    }
    reward_event *rw = &rec->reward;
    if (flags & LEDGER_NO_CUSTOMER)
        snprintf(rw->customer_id, sizeof(rw->customer_id), "%s", customer);
    if (flags & LEDGER_NO_REWARD_ID)
        rules_reward_id(rw->source_event_id, rw->rule_id, customer, rw->reward_id);
    if (flags & LEDGER_DIGEST_REF) { /* layout 4: a reference into <prefix>digests */
        redisReply *r = redisCommand(s->c, "HGET %sdigests %s", s->prefix, rw->program_digest);
        bool ok = r && r->type == REDIS_REPLY_STRING && r->len < sizeof(rw->program_digest);
        if (ok)
            snprintf(rw->program_digest, sizeof(rw->program_digest), "%s", r->str);
        else
            snprintf(why, whylen, "program digest reference %s is not in %sdigests%s%s", rw->program_digest,
                     s->prefix, r && r->type == REDIS_REPLY_ERROR ? ": " : "",
                     r && r->type == REDIS_REPLY_ERROR ? r->str : "");
        freeReplyObject(r);
        if (!ok)
            return -1;
    }
    return 0;
}

/* ---- apply ---------------------------------------------------------------------- */

/* Customers and events per script call: the Lua call's overhead is paid per
 * chunk; a chunk stays small enough not to hold Redis for long. */
#define CHUNK_CUSTOMERS 64
#define CHUNK_EVENTS 512

/* One customer's summed report delta (summed in C over its events). */
typedef struct agg_sum {
    const char *field;   /* borrowed from a request */
    long long sum;
} agg_sum;

/* One script call: parts [first, first + ncust) of the requests (a part is
 * one customer's consecutive requests, or store_trim's customer index). */
typedef struct apply_call {
    size_t first;
    size_t ncust;
} apply_call;

/* Events and ledger entries of one part at most: Lua's unpack() takes at
 * most ~8000 values; a customer with more events in a batch is applied in
 * consecutive parts, each in its own call (in order: the pipelined calls
 * run one after the other, each part computed from the version the previous
 * one leaves). */
#define PART_EVENTS 128
#define PART_LEDGER 2048

typedef struct apply_ctx {
    store_apply_req *reqs;
    size_t *bounds;      /* part p is requests [bounds[p], bounds[p + 1]) */
    apply_call *calls;
    bool trim_only;      /* store_trim: customers without events, every output dropped */
    const char *const *ids; /* store_trim's customers (one request-less customer per index) */
    buf ledger;          /* every request's ledger entries as stored (compact), one after the other */
    size_t *lstart;      /* request i's first entry: index into loff/llen */
    size_t *loff, *llen; /* each entry's offset in ledger and its length */
    char now[24];
    long long trimmed;
    struct apply_ctx *next; /* a transaction's further script calls (owned) */
} apply_ctx;

static void source_name(bool credit, int32_t partition, char *out, size_t len)
{
    if (partition < 0)
        out[0] = '\0';
    else
        snprintf(out, len, "%c%d", credit ? 'c' : 't', (int)partition);
}

void store_committed(store *s, bool credit, int32_t partition, int64_t next_offset)
{
    char name[16];
    source_name(credit, partition, name, sizeof(name));
    if (!name[0])
        return;
    for (size_t i = 0; i < s->ncommitted; i++)
        if (!strcmp(s->committed[i].name, name)) {
            if (next_offset > s->committed[i].next_offset)
                s->committed[i].next_offset = next_offset;
            return;
        }
    if (s->ncommitted == s->capcommitted) {
        store_source *n = grow_array(s->committed, &s->capcommitted, sizeof(*n), 16);
        if (!n)
            return; /* forgetting a commit only keeps outputs longer */
        s->committed = n;
    }
    store_source *c = &s->committed[s->ncommitted++];
    snprintf(c->name, sizeof(c->name), "%s", name);
    c->next_offset = next_offset;
}

/* The decimal integer at the start of p, as atoll reads report.c's deltas
 * (an optional '-', digits; what follows is ignored). */
static long long parse_ll(const char *p)
{
    bool neg = *p == '-';
    unsigned long long u = 0;
    for (p += neg; *p >= '0' && *p <= '9'; p++)
        u = u * 10 + (unsigned long long)(*p - '0');
    return neg ? (long long)(0 - u) : (long long)u;
}

/* Sum the report deltas of requests [b, e) (one customer) by field. */
static int sum_aggregates(const store_apply_req *reqs, size_t b, size_t e, agg_sum **out, size_t *n)
{
    size_t cap = 0;
    *n = 0;
    for (size_t i = b; i < e; i++)
        cap += (size_t)reqs[i].nagg;
    if (!cap)
        return 0;
    agg_sum *v = calloc(cap, sizeof(*v));
    if (!v)
        return -1;
    for (size_t i = b; i < e; i++)
        for (int j = 0; j < reqs[i].nagg; j++) {
            const char *f = reqs[i].agg[2 * j];
            long long d = parse_ll(reqs[i].agg[2 * j + 1]);
            size_t k = 0;
            while (k < *n && (strcmp(v[k].field, f) != 0 || __builtin_add_overflow(v[k].sum, d, &(long long){0})))
                k++;
            if (k == *n) {
                v[k].field = f;
                v[k].sum = 0;
                (*n)++;
            }
            v[k].sum += d; /* an overflowing sum starts a second pair: the script adds both */
        }
    *out = v;
    return 0;
}

/* Queue script call i: its customers' keys and events (see apply_script). */
static int append_call(store *s, size_t ci, void *vctx)
{
    apply_ctx *x = vctx;
    const apply_call *c = &x->calls[ci];
    argvec a;
    argvec_begin(&a, s);
    agg_sum **sums = calloc(c->ncust ? c->ncust : 1, sizeof(*sums));
    size_t *nsums = calloc(c->ncust ? c->ncust : 1, sizeof(*nsums));
    int rc = -1;
    if (!sums || !nsums)
        goto out;
    arg_s(&a, "EVALSHA");
    arg_s(&a, s->sha);
    arg_ll(&a, (long long)(1 + 5 * c->ncust));
    arg_f(&a, "%saggregates", s->prefix);
    /* the keys, customer by customer */
    for (size_t k = 0; k < c->ncust; k++) {
        const char *cust = x->trim_only ? x->ids[c->first + k] : x->reqs[x->bounds[c->first + k]].customer_id;
        static const char suffix[] = "pdtlc";
        for (int j = 0; j < 5; j++)
            arg_key(&a, s->prefix, cust, suffix[j]);
    }
    arg_ll(&a, (long long)s->retention_ms);
    arg_s(&a, x->now);
    arg_ll(&a, (long long)s->ledger_max);
    arg_ll(&a, (long long)c->ncust);
    arg_ll(&a, (long long)s->ncommitted);
    for (size_t i = 0; i < s->ncommitted; i++) {
        arg_s(&a, s->committed[i].name);
        arg_ll(&a, (long long)s->committed[i].next_offset);
    }
    for (size_t k = 0; k < c->ncust; k++) {
        if (x->trim_only) {
            arg_s(&a, "x");
            arg_s(&a, "");
            arg_s(&a, "");
            arg_s(&a, "0");
            arg_s(&a, "0");
            continue;
        }
        size_t b = x->bounds[c->first + k], i = x->bounds[c->first + k + 1];
        const store_apply_req *last = &x->reqs[i - 1];
        if (sum_aggregates(x->reqs, b, i, &sums[k], &nsums[k]) != 0)
            goto out;
        arg_s(&a, "a");
        arg_ll(&a, (long long)x->reqs[b].expected_version);
        arg(&a, last->profile ? last->profile->data : "", last->profile ? last->profile->len : 0);
        arg_ll(&a, (long long)(i - b));
        arg_ll(&a, (long long)nsums[k]);
        for (size_t e = b; e < i; e++) {
            const store_apply_req *q = &x->reqs[e];
            char src[16];
            source_name(q->source_credits, q->partition, src, sizeof(src));
            arg_s(&a, q->id);
            arg_s(&a, q->credit ? "c" : "t");
            arg(&a, (const char *)(q->digest ? q->digest : no_digest), STORE_DIGEST_LEN);
            arg_ll(&a, (long long)q->occurred_at);
            arg_s(&a, src);
            arg_ll(&a, src[0] ? (long long)q->offset : -1LL);
            arg(&a, q->outputs ? q->outputs->data : "", q->outputs ? q->outputs->len : 0);
            arg_ll(&a, (long long)q->nledger);
            if (outputs_by_source(q) && q->outputs && q->outputs->len)
                ow_note_req(s, q); /* (dropped once committed, if the script writes it) */
            for (size_t l = x->lstart[e]; l < x->lstart[e] + (size_t)q->nledger; l++)
                arg(&a, x->ledger.data + x->loff[l], x->llen[l]);
        }
        for (size_t j = 0; j < nsums[k]; j++) {
            arg_s(&a, sums[k][j].field);
            arg_ll(&a, sums[k][j].sum);
        }
    }
    rc = argvec_send(cur(s), &a);
out:
    for (size_t k = 0; sums && k < c->ncust; k++)
        free(sums[k]);
    free(sums);
    free(nsums);
    return rc;
}

/* Read script call i's reply into its requests' statuses. */
static int call_reply(const redisReply *r, size_t ci, void *vctx, char *err, size_t errlen)
{
    apply_ctx *x = vctx;
    const apply_call *c = &x->calls[ci];
    if (r->type != REDIS_REPLY_ARRAY || r->elements != c->ncust) {
        snprintf(err, errlen, "redis apply: unexpected reply (type %d, %zu elements)", r->type,
                 r->type == REDIS_REPLY_ARRAY ? r->elements : 0);
        return -1;
    }
    for (size_t k = 0; k < c->ncust; k++) {
        const redisReply *cr = r->element[k];
        if (cr->type != REDIS_REPLY_ARRAY || cr->elements < 1) {
            snprintf(err, errlen, "redis apply: unexpected reply for customer %zu", k);
            return -1;
        }
        x->trimmed += cr->element[0]->integer;
        if (x->trim_only)
            continue;
        size_t nev = (cr->elements - 1) / 2, i = x->bounds[c->first + k];
        if (nev != x->bounds[c->first + k + 1] - i) {
            snprintf(err, errlen, "redis apply: %zu statuses for %zu events", nev, x->bounds[c->first + k + 1] - i);
            return -1;
        }
        for (size_t e = 0; e < nev; e++, i++) {
            store_apply_req *q = &x->reqs[i];
            const redisReply *st = cr->element[1 + 2 * e], *v = cr->element[2 + 2 * e];
            q->status = (store_status)st->integer;
            buf_reset(&q->recorded);
            if (q->status == STORE_DUPLICATE) {
                if (buf_append(&q->recorded, v->str ? v->str : "", v->str ? v->len : 0) != 0) {
                    snprintf(err, errlen, "out of memory");
                    return -1;
                }
            } else {
                q->version = v->str ? atoll(v->str) : 0;
            }
        }
    }
    return 0;
}

/* Split requests into parts (a customer's consecutive requests, at most
 * PART_EVENTS events and PART_LEDGER ledger entries) and the parts into
 * script calls (CHUNK_CUSTOMERS parts, CHUNK_EVENTS events; a part followed
 * by another part of the same customer ends its call). store_trim: n
 * customers, one part each, no requests. Returns the calls; *bounds the
 * parts' limits (n + 1 at most); NULL when out of memory. */
static apply_call *plan_calls(const store_apply_req *reqs, size_t n, bool trim_only, size_t **bounds,
                              size_t *ncalls)
{
    apply_call *calls = calloc(n ? n : 1, sizeof(*calls));
    size_t *pb = calloc(n + 1, sizeof(*pb));
    if (!calls || !pb) {
        free(calls);
        free(pb);
        return NULL;
    }
    size_t nparts = 0;
    bool *cont = calloc(n ? n : 1, sizeof(*cont)); /* part p is followed by more of its customer */
    if (!cont) {
        free(calls);
        free(pb);
        return NULL;
    }
    for (size_t i = 0; i < n;) {
        pb[nparts] = i;
        size_t b = i++, ledger = trim_only ? 0 : (size_t)reqs[b].nledger;
        while (!trim_only && i < n && !strcmp(reqs[i].customer_id, reqs[b].customer_id) && i - b < PART_EVENTS &&
               ledger + (size_t)reqs[i].nledger <= PART_LEDGER)
            ledger += (size_t)reqs[i++].nledger;
        cont[nparts++] = !trim_only && i < n && !strcmp(reqs[i].customer_id, reqs[b].customer_id);
    }
    pb[nparts] = n;
    *ncalls = 0;
    for (size_t p = 0; p < nparts;) {
        apply_call *c = &calls[(*ncalls)++];
        c->first = p;
        size_t events = 0;
        while (p < nparts && c->ncust < CHUNK_CUSTOMERS && events < CHUNK_EVENTS) {
            events += pb[p + 1] - pb[p];
            c->ncust++;
            if (cont[p++])
                break;
        }
    }
    free(cont);
    *bounds = pb;
    return calls;
}

/* The ledger entries of the n requests as they are stored (ledger_binary). */
static int prepare_ledger(store *s, apply_ctx *x, size_t n)
{
    size_t total = 0;
    for (size_t i = 0; i < n; i++)
        total += (size_t)x->reqs[i].nledger;
    x->lstart = calloc(n ? n : 1, sizeof(*x->lstart));
    x->loff = calloc(total ? total : 1, sizeof(*x->loff));
    x->llen = calloc(total ? total : 1, sizeof(*x->llen));
    if (!x->lstart || !x->loff || !x->llen)
        return -1;
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        const store_apply_req *q = &x->reqs[i];
        x->lstart[i] = k;
        for (int l = 0; l < q->nledger; l++, k++) {
            size_t len = q->ledger_len ? q->ledger_len[l] : strlen(q->ledger[l]);
            x->loff[k] = x->ledger.len;
            if (ledger_binary(s, q->customer_id, q->ledger[l], len, &x->ledger) != 0)
                return -1;
            x->llen[k] = x->ledger.len - x->loff[k];
        }
    }
    return 0;
}

static void apply_ctx_free(apply_ctx *x)
{
    if (!x)
        return;
    apply_ctx_free(x->next);
    free(x->calls);
    free(x->bounds);
    buf_free(&x->ledger);
    free(x->lstart);
    free(x->loff);
    free(x->llen);
    free(x);
}

/* Append and write out the script calls of x (owned from here). */
static int script_send(store *s, apply_ctx *x, size_t ncalls, const char *what, char *err, size_t errlen)
{
    int rc = send_ready(s, err, errlen);
    if (rc == 0)
        rc = tx_close(s, err, errlen); /* (store_trim while a transaction is open: after its EXEC) */
    if (rc == 0 && s->readonly) {
        snprintf(err, errlen, "redis EVALSHA (%s): this connection is read-only", what);
        rc = STORE_PERMANENT;
    }
    if (rc) {
        apply_ctx_free(x);
        return rc;
    }
    for (size_t i = 0; i < ncalls; i++)
        if (append_call(s, i, x) != 0) { /* some calls may be appended already: the connection goes */
            snprintf(err, errlen, "out of memory");
            apply_ctx_free(x);
            drop_connection(s);
            return STORE_PERMANENT;
        }
    store_op op = {.fetch = false, .x = x, .ncalls = ncalls, .what = what};
    return send_done(s, &op, err, errlen);
}

/* Read the replies of the oldest send in flight, script calls. A NOSCRIPT
 * reply (cache flushed by a restart or SCRIPT FLUSH) means that call did not
 * run: the script is loaded again and those calls, and only those, are
 * repeated (the others ran); with other calls in flight behind them (their
 * replies come first), the connection is dropped instead (STORE_TRANSIENT:
 * the caller reconnects, which loads the script, and applies again). */
static int script_recv(store *s, long long *trimmed, char *err, size_t errlen)
{
    store_op op;
    int rc = recv_head(s, false, &op, err, errlen);
    if (rc)
        return rc;
    apply_ctx *x = op.x;
    size_t n = op.ncalls;
    char cmd[64];
    snprintf(cmd, sizeof(cmd), "EVALSHA (%s)", op.what);
    bool *redo = calloc(n ? n : 1, sizeof(*redo)); /* the calls that met NOSCRIPT: sent again */
    if (!redo) {
        snprintf(err, errlen, "out of memory");
        apply_ctx_free(x);
        drop_connection(s);
        return STORE_PERMANENT;
    }
    for (int attempt = 0; attempt < 3; attempt++) {
        if (attempt == 2) {
            snprintf(err, errlen, "redis %s: NOSCRIPT: the script is missing again right after SCRIPT LOAD", cmd);
            rc = STORE_PERMANENT;
            break;
        }
        if (attempt) {
            int done = 0;
            for (size_t i = 0; i < n && rc == 0; i++)
                if (redo[i] && append_call(s, i, x) != 0) {
                    snprintf(err, errlen, "out of memory");
                    drop_connection(s);
                    rc = STORE_PERMANENT;
                }
            while (rc == 0 && !done)
                if (redisBufferWrite(s->c, &done) != REDIS_OK) {
                    snprintf(err, errlen, "redis %s: %s", cmd, s->c->errstr[0] ? s->c->errstr : "connection lost");
                    drop_connection(s);
                    rc = STORE_TRANSIENT;
                }
            if (rc)
                break;
        }
        int noscript = 0;
        for (size_t i = 0; i < n; i++) {
            redisReply *r;
            if (attempt && !redo[i])
                continue;
            redo[i] = false;
            if (get_reply(s, &r, cmd, err, errlen) != 0) {
                drop_connection(s);
                rc = STORE_TRANSIENT;
                break;
            }
            if (r->type == REDIS_REPLY_ERROR && !strncmp(r->str, "NOSCRIPT", 8))
                noscript = redo[i] = true;
            else if (r->type == REDIS_REPLY_ERROR) {
                int cls = reply_class(r);
                /* keep the first error's text, and permanent over transient */
                if (rc == 0 || (cls == STORE_PERMANENT && rc != STORE_PERMANENT)) {
                    snprintf(err, errlen, "redis %s: %s", cmd, r->str);
                    rc = cls;
                }
            } else if (call_reply(r, i, x, err, errlen) != 0)
                rc = STORE_PERMANENT;
            freeReplyObject(r);
        }
        if (rc != 0 || !noscript)
            break;
        if (s->nops > s->opshead) {
            snprintf(err, errlen, "redis %s: NOSCRIPT (script cache flushed) with other calls in flight: reconnecting",
                     cmd);
            drop_connection(s);
            rc = STORE_TRANSIENT;
            break;
        }
        if ((rc = load_scripts(s, err, errlen)) != 0)
            break;
    }
    if (trimmed)
        *trimmed = x->trimmed;
    free(redo);
    apply_ctx_free(x);
    return rc;
}

/* The calls of n requests (store_trim: n customers), ready to send; NULL when out of memory. */
static apply_ctx *plan_ctx(store_apply_req *reqs, size_t n, const char *const *ids, int64_t now_ms,
                           size_t *ncalls)
{
    apply_ctx *x = calloc(1, sizeof(*x));
    if (!x)
        return NULL;
    x->reqs = reqs;
    x->ids = ids;
    x->trim_only = ids != NULL;
    if (!(x->calls = plan_calls(reqs, n, x->trim_only, &x->bounds, ncalls))) {
        free(x);
        return NULL;
    }
    snprintf(x->now, sizeof(x->now), "%lld", (long long)now_ms);
    return x;
}

/* ---- the apply as a transaction (THE APPLY) ---------------------------------------- */

/* How one customer of a transaction send goes. */
enum { TX_SCRIPT, TX_WRITE, TX_DECIDED };

/* Whether request q's id was fetched (under the WATCH) and not found; *cur
 * walks the customer's list in order (the usual case), a miss looks it all over. */
static bool tx_unseen(const wtable *t, const wcust *w, const store_apply_req *q, int *cur)
{
    for (int pass = 0; pass < 2; pass++)
        for (int i = pass ? w->ids : *cur; i >= 0; i = t->ids[i].next)
            if (t->ids[i].credit == q->credit && !strcmp(t->arena.data + t->ids[i].off, q->id)) {
                *cur = t->ids[i].next;
                return true;
            }
    return false;
}

/* Decide customer reqs[b, e) on what its fetch read (w): TX_WRITE, TX_DECIDED
 * (statuses set: FENCED, or TOO_OLD and NOT_APPLIED), or TX_SCRIPT: what C
 * does not decide goes through the script, inside the same transaction (a
 * customer of layout <= 3 with :t, a trim scan due, an id found or repeated,
 * anything unexpected). */
static int tx_decide(store *s, const wtable *t, const wcust *w, store_apply_req *reqs, size_t b, size_t e,
                     int64_t now)
{
    if (!w || !w->ok || (w->has_hw && !w->has_tn))
        return TX_SCRIPT;
    if (w->has_hw && w->tn_num) {
        int64_t cutoff = (w->hw < now ? w->hw : now) - s->retention_ms;
        if (8 * (cutoff - w->tn) > s->retention_ms) /* the script's cutoff - tn > retention / 8 */
            return TX_SCRIPT;
    }
    int cur = w->ids;
    for (size_t i = b; i < e; i++) {
        if (!tx_unseen(t, w, &reqs[i], &cur))
            return TX_SCRIPT;
        for (size_t j = b; j < i; j++)
            if (reqs[j].credit == reqs[i].credit && !strcmp(reqs[j].id, reqs[i].id))
                return TX_SCRIPT;
    }
    if (w->v != reqs[b].expected_version) {
        for (size_t i = b; i < e; i++) {
            reqs[i].status = STORE_FENCED;
            reqs[i].version = w->v;
        }
        return TX_DECIDED;
    }
    bool old = false;
    for (size_t i = b; i < e; i++)
        old |= !reqs[i].credit && reqs[i].occurred_at < w->tf;
    if (!old)
        return TX_WRITE;
    for (size_t i = b; i < e; i++) {
        bool too_old = !reqs[i].credit && reqs[i].occurred_at < w->tf;
        reqs[i].status = too_old ? STORE_TOO_OLD : STORE_NOT_APPLIED;
        reqs[i].version = w->v;
    }
    return TX_DECIDED;
}

/* The next uncommitted offset of a source ("t3"), or -1 when none was committed. */
static int64_t committed_of(const store *s, const char *name, size_t len)
{
    for (size_t i = 0; i < s->ncommitted; i++)
        if (strlen(s->committed[i].name) == len && !memcmp(s->committed[i].name, name, len))
            return s->committed[i].next_offset;
    return -1;
}

/* Whether an entry "<src>/<offset>" of po is committed (the script's match '^(%w*)/(%-?%d+)$'). */
static bool po_committed(const store *s, const char *so, size_t n)
{
    const char *slash = memchr(so, '/', n);
    if (!slash)
        return false;
    for (const char *p = so; p < slash; p++)
        if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9')))
            return false;
    int64_t off, c = committed_of(s, so, (size_t)(slash - so));
    if (c < 0 || parse_int(slash + 1, n - (size_t)(slash - so) - 1, &off) != 0)
        return false;
    return off < c;
}

/* The field of an event's outputs in <prefix>o:<source>: "<offset>/t<customer>" NUL "<id>", a
 * credit's "<offset>/c<customer>" NUL "<credit id>" (an in-process credit shares its event's
 * offset, tests share offset 0: the kind, customer and id make it unique). */
#define OUTPUT_FIELD_MAX (24 + 2 * (EVENT_ID_MAX + 1) + 4)
/* That field's text in f (OUTPUT_FIELD_MAX bytes); its length. */
static size_t output_field_text(char *f, int64_t off, bool credit, const char *cust, const char *id)
{
    int n = snprintf(f, OUTPUT_FIELD_MAX, "%lld/%c%s%c%s", (long long)off, credit ? 'c' : 't', cust, '\0', id);
    return n > 0 && n < OUTPUT_FIELD_MAX ? (size_t)n : OUTPUT_FIELD_MAX - 1;
}

static void output_field(argvec *a, int64_t off, bool credit, const char *cust, const char *id)
{
    char f[OUTPUT_FIELD_MAX];
    arg(a, f, output_field_text(f, off, credit, cust, id));
}

/* Note an output field written to <prefix>o:<src> (dropped once its block is committed).
 * Forgetting one (out of memory) only keeps it until the next owner's first commit. */
static void ow_note(store *s, const char *src, int64_t off, const char *field, size_t flen)
{
    struct osource *o = NULL;
    for (size_t i = s->nosrc; i > 0 && !o; i--)
        if (!strcmp(s->osrc[i - 1].name, src))
            o = &s->osrc[i - 1];
    if (!o) {
        if (s->nosrc == s->caposrc) {
            struct osource *n = grow_array(s->osrc, &s->caposrc, sizeof(*n), 16);
            if (!n)
                return;
            s->osrc = n;
        }
        o = &s->osrc[s->nosrc++];
        memset(o, 0, sizeof(*o));
        snprintf(o->name, sizeof(o->name), "%s", src);
        o->min_off = INT64_MAX;
    }
    if (o->n == o->cap) {
        struct owritten *n = grow_array(o->e, &o->cap, sizeof(*n), 256);
        if (!n)
            return;
        o->e = n;
    }
    size_t at = o->fields.len;
    if (buf_append(&o->fields, field, flen) != 0)
        return;
    o->e[o->n++] = (struct owritten){.off = off, .field = at, .flen = flen};
    if (off < o->min_off)
        o->min_off = off;
}

/* The same for request q (an event read from a partition, with outputs). */
static void ow_note_req(store *s, const store_apply_req *q)
{
    char src[16], f[OUTPUT_FIELD_MAX];
    source_name(q->source_credits, q->partition, src, sizeof(src));
    ow_note(s, src, q->offset, f, output_field_text(f, q->offset, q->credit, q->customer_id, q->id));
}

/* Whether request q's outputs go to <prefix>o:<source> (layout 6) rather than :p: an event read
 * from a partition (layout 8: a credit too, by its own offset of the credits topic or, applied in
 * process, by its source touchpoint's). The script's ev.os. */
static bool outputs_by_source(const store_apply_req *q)
{
    return q->partition >= 0 && q->offset >= 0;
}

/* Outputs go by whole blocks of this many offsets of their source: once the commit passes the
 * end of an event's block (OUTPUTS AFTER THE COMMIT). */
#define OUTPUT_BLOCK 256
/* A partition of the credits topic ("c<p>", layout 8) goes by each commit: it carries ~1 message
 * for 100 touchpoints, so a block of 256 would keep up to 255 credits' outputs per partition for
 * as long as it takes to fill (all of them in bench/mem.sh's run), where layout 7 dropped them at
 * the referrer's next apply after the commit. */
#define OUTPUT_BLOCK_CREDITS 1

/* The offsets of source src whose outputs may go: those below the last whole block committed
 * (-1: none). */
static int64_t drop_below(const store *s, const char *src)
{
    int64_t c = committed_of(s, src, strlen(src)), block = src[0] == 'c' ? OUTPUT_BLOCK_CREDITS : OUTPUT_BLOCK;
    return c < 0 ? -1 : c - c % block;
}

/* Append the HDELs of the outputs noted whose blocks are committed, one per source, and forget
 * them: the number of commands appended (their replies are not read). Only a source whose commit
 * passed a block since is looked at (min_off), so a fetch costs nothing when none did. */
static size_t append_drops(store *s)
{
    size_t ncmd = 0;
    for (size_t k = 0; k < s->nosrc; k++) {
        struct osource *o = &s->osrc[k];
        int64_t c = drop_below(s, o->name);
        if (o->n == 0 || o->min_off >= c)
            continue;
        argvec a;
        argvec_begin(&a, s);
        arg_s(&a, "HDEL");
        arg_f(&a, "%so:%s", s->prefix, o->name);
        buf rest = {0};
        size_t keep = 0;
        int64_t min_off = INT64_MAX;
        for (size_t i = 0; i < o->n; i++) {
            struct owritten w = o->e[i];
            if (w.off < c) {
                arg(&a, o->fields.data + w.field, w.flen);
                continue;
            }
            size_t at = rest.len;
            if (buf_append(&rest, o->fields.data + w.field, w.flen) != 0)
                continue; /* (out of memory: forgotten, kept in Redis until the next owner's commit) */
            o->e[keep++] = (struct owritten){.off = w.off, .field = at, .flen = w.flen};
            if (w.off < min_off)
                min_off = w.off;
        }
        if (argvec_send(s->c, &a) == 0)
            ncmd++;
        buf_free(&o->fields);
        o->fields = rest;
        o->n = keep;
        o->min_off = min_off;
    }
    return ncmd;
}

/* Append HGETALL of <prefix>o:<source> for the committed sources not looked at yet by this process
 * (outputs an earlier process wrote and did not drop: a crash before its commit or between its
 * commit and its next fetch); fetch_read notes them, a fetch drops each once committed. */
static void append_scans(store *s, store_op *op)
{
    for (size_t i = 0; i < s->ncommitted; i++) {
        const char *src = s->committed[i].name;
        bool done = false;
        for (size_t j = 0; j < s->noscan && !done; j++)
            done = !strcmp(s->oscan[j], src);
        if (done)
            continue;
        if (s->noscan == s->caposcan) {
            char(*n)[16] = grow_array(s->oscan, &s->caposcan, sizeof(*n), 16);
            if (!n)
                return;
            s->oscan = n;
        }
        if (!op->scan && !(op->scan = calloc(s->ncommitted, sizeof(*op->scan))))
            return;
        snprintf(s->oscan[s->noscan++], 16, "%s", src);
        argvec a;
        argvec_begin(&a, s);
        arg_s(&a, "HGETALL"); /* (HKEYS is not among the run user's commands: deploy/redis-acl.conf) */
        arg_f(&a, "%so:%s", s->prefix, src);
        if (argvec_send(s->c, &a) != 0) {
            s->noscan--;
            return;
        }
        snprintf(op->scan[op->nscan++], 16, "%s", src);
    }
}

/* Read HGETALL of <prefix>o:<src>: note every field (each is dropped once the commit passes its
 * offset, like this process's own: an earlier process's uncommitted batch is redelivered here). */
static void read_scan(store *s, const char *src, const redisReply *r)
{
    if (r->type != REDIS_REPLY_ARRAY)
        return;
    for (size_t i = 0; i < r->elements; i += 2) {
        const redisReply *e = r->element[i];
        int64_t off;
        const char *slash = e->type == REDIS_REPLY_STRING ? memchr(e->str, '/', e->len) : NULL;
        if (slash && parse_int(e->str, (size_t)(slash - e->str), &off) == 0)
            ow_note(s, src, off, e->str, e->len);
    }
}

/* Queue one command of the transaction (a plain write). */
static int tx_queue(store *s, argvec *a, store_op *op, size_t *capq, apply_ctx *x, size_t call)
{
    if (op->nq == *capq) {
        qtag *n = grow_array(op->tags, capq, sizeof(*n), 64);
        if (!n)
            return -1;
        op->tags = n;
    }
    if (a && argvec_send(cur(s), a) != 0)
        return -1;
    op->tags[op->nq].x = x;
    op->tags[op->nq].lane = s->qlane;
    op->tags[op->nq++].call = call;
    return 0;
}

/* Queue the plain writes of customer reqs[b, e) (TX_WRITE): exactly what the
 * script writes for it (HSET :p, HDEL of the committed outputs, the records,
 * the ledger). */
static int tx_write(store *s, const wtable *t, const wcust *w, apply_ctx *x, size_t b, size_t e, store_op *op,
                    size_t *capq)
{
    store_apply_req *reqs = x->reqs;
    const char *cust = reqs[b].customer_id;
    const store_apply_req *last = &reqs[e - 1];
    int64_t hw = w->hw, tn = w->tn;
    bool tn_num = w->tn_num, tnw = !w->has_tn;
    for (size_t i = b; i < e; i++)
        if (!reqs[i].credit) {
            if (reqs[i].occurred_at > hw)
                hw = reqs[i].occurred_at;
            if (!tn_num || reqs[i].occurred_at < tn) {
                tn = reqs[i].occurred_at;
                tn_num = tnw = true;
            }
        }
    /* po: the entries not committed, then this apply's */
    buf *po = &s->txpo;
    buf_reset(po);
    argvec a;
    argvec drop;
    size_t ndrop = 0;
    const char *p = t->arena.data + w->po, *end = p + w->polen;
    argvec_begin(&a, s); /* (the HSET is built in s->cmd; the drops in txdrop) */
    drop.text = &s->txdrop;
    drop.n = 0;
    drop.oom = buf_reserve(drop.text, 256) != 0;
    if (!drop.oom) {
        memset(drop.text->data, 0, RESP_HEAD);
        drop.text->len = RESP_HEAD;
    }
    arg_s(&drop, "HDEL");
    arg_key(&drop, s->prefix, cust, 'p');
    while (p < end) {
        const char *z1 = memchr(p + 1, '\0', (size_t)(end - p - 1));
        const char *z2 = z1 ? memchr(z1 + 1, '\0', (size_t)(end - z1 - 1)) : NULL;
        if (!z2)
            return -2; /* (tx_decide's parse found it whole: not reached) */
        if (po_committed(s, p + 1, (size_t)(z1 - p - 1))) {
            char f[EVENT_ID_MAX + 3];
            int fl = snprintf(f, sizeof(f), "o%c%.*s", p[0], (int)(z2 - z1 - 1), z1 + 1);
            arg(&drop, f, fl > 0 && (size_t)fl < sizeof(f) ? (size_t)fl : sizeof(f) - 1);
            ndrop++;
        } else if (buf_append(po, p, (size_t)(z2 - p + 1)) != 0)
            return -1;
        p = z2 + 1;
    }
    /* a hashtable :p (a whole layout-6 profile, kept outputs) left with nothing longer than a piece:
     * rebuilt, every field HDEL'd (the key goes) then written again, so Redis keeps it as a listpack */
    bool own = false;
    for (size_t i = b; i < e; i++)
        own |= !outputs_by_source(&reqs[i]);
    size_t plen = last->profile ? last->profile->len : 0, npieces = pieces_of(plen);
    bool rebuild = w->big && !own && po->len == 0 && (npieces > 1 || plen <= STORE_PROFILE_PIECE);
    char pf[24];
    if (rebuild) {
        static const char *const small[] = {"v", "hw", "tf", "tn", "po"};
        for (int i = 0; i < 5; i++)
            arg_s(&drop, small[i]);
        for (size_t i = 0; i < w->endpiece; i++)
            arg(&drop, pf, piece_field(pf, sizeof(pf), i));
        if (tx_queue(s, &drop, op, capq, NULL, 0) != 0)
            return -1;
        ndrop = 0;
    }
    arg_s(&a, "HSET");
    arg_key(&a, s->prefix, cust, 'p');
    arg_s(&a, "v");
    arg_ll(&a, (long long)(w->v + (int64_t)(e - b)));
    for (size_t i = 0; i < npieces; i++) {
        size_t at = i * STORE_PROFILE_PIECE, n = plen - at < STORE_PROFILE_PIECE ? plen - at : STORE_PROFILE_PIECE;
        if (npieces == 1)
            n = plen; /* (whole: a long one too) */
        const char *piece = plen ? last->profile->data + at : "";
        /* a piece the same as stored is not written again (Redis parses and replaces each field) */
        if (!rebuild && w->inpieces && at < w->proflen &&
            (w->proflen - at < STORE_PROFILE_PIECE ? w->proflen - at : STORE_PROFILE_PIECE) == n &&
            !memcmp(t->arena.data + w->prof + at, piece, n))
            continue;
        arg(&a, pf, piece_field(pf, sizeof(pf), i));
        arg(&a, piece, n);
    }
    arg_s(&a, "hw");
    arg_ll(&a, (long long)hw);
    for (size_t i = b; i < e; i++) {
        const store_apply_req *q = &reqs[i];
        if (outputs_by_source(q)) /* (in <prefix>o:<source>, below) */
            continue;
        char f[EVENT_ID_MAX + 3], src[16];
        int fl = snprintf(f, sizeof(f), "o%c%s", q->credit ? 'c' : 't', q->id);
        arg(&a, f, fl > 0 && (size_t)fl < sizeof(f) ? (size_t)fl : sizeof(f) - 1);
        arg(&a, q->outputs ? q->outputs->data : "", q->outputs ? q->outputs->len : 0);
        source_name(q->source_credits, q->partition, src, sizeof(src));
        char num[24];
        char *d = fmt_ll(num, src[0] ? (long long)q->offset : -1LL);
        if (buf_append(po, q->credit ? "c" : "t", 1) || buf_append(po, src, strlen(src)) || buf_append(po, "/", 1) ||
            buf_append(po, d, (size_t)(num + 24 - d)) || buf_append(po, "", 1) ||
            buf_append(po, q->id, strlen(q->id)) || buf_append(po, "", 1))
            return -1;
    }
    /* po only when it changes: gone when empty (the script's npo) */
    if (po->len > 0 && !(po->len == w->polen && !memcmp(po->data, t->arena.data + w->po, po->len))) {
        arg_s(&a, "po");
        arg(&a, po->data, po->len);
    } else if (po->len == 0 && w->polen > 0 && !rebuild) {
        arg_s(&drop, "po");
        ndrop++;
    }
    if (rebuild && w->has_tf) {
        arg_s(&a, "tf");
        arg_ll(&a, (long long)w->tf);
    }
    if (tnw || (rebuild && w->has_tn)) {
        arg_s(&a, "tn");
        if (tn_num)
            arg_ll(&a, (long long)tn);
        else
            arg_s(&a, "");
    }
    if (tx_queue(s, &a, op, capq, NULL, 0) != 0)
        return -1;
    /* the pieces a longer profile had past this one's */
    for (size_t i = npieces; !rebuild && i < w->endpiece; i++) {
        arg(&drop, pf, piece_field(pf, sizeof(pf), i));
        ndrop++;
    }
    if (ndrop && tx_queue(s, &drop, op, capq, NULL, 0) != 0)
        return -1;
    /* the records: a touchpoint's "\6" (read from a partition) or "\5" (tools) + 8 bytes of digest +
     * event time (varint) [+ source, offset] in :d; a credit's in :c: "\6" + 8 bytes of digest, time
     * 0 (never trimmed), source, offset (layout 8), or "\3" + the whole digest (no source: tools) */
    for (int credit = 0; credit < 2; credit++) {
        size_t nrec = 0;
        argvec_begin(&a, s);
        arg_s(&a, "HSET");
        arg_key(&a, s->prefix, cust, credit ? 'c' : 'd');
        for (size_t i = b; i < e; i++) {
            const store_apply_req *q = &reqs[i];
            if (q->credit != (credit == 1))
                continue;
            char rec[1 + STORE_DIGEST_LEN + 3 * 10];
            rec[0] = credit ? 3 : 5;
            memcpy(rec + 1, q->digest ? q->digest : no_digest, credit ? STORE_DIGEST_LEN : STORE_RECORD_DIGEST_LEN);
            size_t rl = 1 + (credit ? STORE_DIGEST_LEN : STORE_RECORD_DIGEST_LEN);
            if (!credit)
                rl += put_varint(rec + rl, q->occurred_at);
            if (outputs_by_source(q)) {
                rec[0] = 6;
                if (credit) {
                    rl = 1 + STORE_RECORD_DIGEST_LEN;
                    rl += put_varint(rec + rl, 0);
                }
                rl += put_varint(rec + rl, 2 * (int64_t)q->partition + q->source_credits);
                rl += put_varint(rec + rl, q->offset);
            }
            arg_s(&a, q->id);
            arg(&a, rec, rl);
            nrec++;
        }
        if (nrec && tx_queue(s, &a, op, capq, NULL, 0) != 0)
            return -1;
    }
    /* the ledger, trimmed to ledger_max when it grows past it */
    size_t nl = 0;
    argvec_begin(&a, s);
    arg_s(&a, "RPUSH");
    arg_key(&a, s->prefix, cust, 'l');
    for (size_t i = b; i < e; i++)
        for (size_t l = x->lstart[i]; l < x->lstart[i] + (size_t)reqs[i].nledger; l++, nl++)
            arg(&a, x->ledger.data + x->loff[l], x->llen[l]);
    if (nl) {
        if (tx_queue(s, &a, op, capq, NULL, 0) != 0)
            return -1;
        if (s->ledger_max > 0 && w->llen + (int64_t)nl > s->ledger_max) {
            argvec_begin(&a, s);
            arg_s(&a, "LTRIM");
            arg_key(&a, s->prefix, cust, 'l');
            arg_ll(&a, -(long long)s->ledger_max);
            arg_s(&a, "-1");
            if (tx_queue(s, &a, op, capq, NULL, 0) != 0)
                return -1;
        }
    }
    return 0;
}

/* Report deltas summed by field: a send's (tx_apply_send) and the open
 * transaction's (store.txa: one HINCRBY per field at its EXEC instead of one
 * per field and send; the pipeline streams a round's customers in groups of
 * 64, and most fields (events, points, rules, personas) come back in every
 * group). Every sum is checked, never wrapped. The deltas of customers the
 * script applies inside the transaction are kept apart: their calls run
 * before the HINCRBYs, and add their deltas only if they apply, so what
 * they may add is bounded by their positive and negative deltas summed. */
typedef struct aggsum {
    size_t off;          /* the field's name in names */
    long long sum;       /* the deltas of customers written in C: the HINCRBY */
    long long up, down;  /* the deltas of customers the script applies: the positive, the negative summed */
    bool hincr;          /* a customer written in C brought the field: HINCRBY it (even by 0, as the script does) */
} aggsum;

typedef struct aggsums {
    buf names;           /* field names, NUL-terminated */
    aggsum *v;           /* in the order first added */
    size_t n, cap;
    strindex idx;        /* a field's entry by the name */
} aggsums;

/* The name of entry i (the key of idx). */
static const char *aggsums_key(const void *ctx, size_t i)
{
    const aggsums *g = ctx;
    return g->names.data + g->v[i].off;
}

/* Field f's entry, or NULL. */
static const aggsum *aggsums_find(const aggsums *g, const char *f)
{
    long i = g ? strindex_find(&g->idx, f, aggsums_key, g) : -1;
    return i >= 0 ? &g->v[i] : NULL;
}

static void aggsums_reset(aggsums *g)
{
    if (!g)
        return;
    buf_reset(&g->names);
    g->n = 0;
    strindex_reset(&g->idx);
}

/* Release what g holds (not g itself). */
static void aggsums_clear(aggsums *g)
{
    buf_free(&g->names);
    free(g->v);
    strindex_free(&g->idx);
}

static void aggsums_free(aggsums *g)
{
    if (!g)
        return;
    aggsums_clear(g);
    free(g);
}

/* Add to field f's entry: sum to its sum (hincr: a customer written in C),
 * up and down to its script bounds. 0; 1 when a sum would leave 64 bits
 * (nothing added); -1 out of memory. */
static int aggsums_add(aggsums *g, const char *f, long long sum, bool hincr, long long up, long long down)
{
    int *sl = strindex_slot(&g->idx, f, g->n + 1, aggsums_key, g);
    if (!sl)
        return -1;
    if (!*sl) {
        if (g->n == g->cap) {
            aggsum *v = grow_array(g->v, &g->cap, sizeof(*v), 64);
            if (!v)
                return -1;
            g->v = v;
        }
        size_t off = g->names.len;
        if (buf_append(&g->names, f, strlen(f) + 1) != 0)
            return -1;
        g->v[g->n] = (aggsum){.off = off};
        *sl = (int)++g->n;
    }
    aggsum *a = &g->v[*sl - 1];
    long long s2, u2, d2;
    if (__builtin_add_overflow(a->sum, sum, &s2) || __builtin_add_overflow(a->up, up, &u2) ||
        __builtin_add_overflow(a->down, down, &d2))
        return 1;
    a->sum = s2;
    a->up = u2;
    a->down = d2;
    a->hincr |= hincr;
    return 0;
}

/* Add one customer's deltas (sum_aggregates' pairs) to the send's: written
 * in C, or by the script (its bounds). 0, 1 (a sum would leave 64 bits: the
 * field in *bad), -1. */
static int aggsums_customer(aggsums *g, const agg_sum *v, size_t n, bool script, const char **bad)
{
    for (size_t k = 0; k < n; k++) {
        long long d = v[k].sum;
        int rc = script ? aggsums_add(g, v[k].field, 0, false, d > 0 ? d : 0, d < 0 ? d : 0)
                        : aggsums_add(g, v[k].field, d, true, 0, 0);
        if (rc) {
            *bad = v[k].field;
            return rc;
        }
    }
    return 0;
}

/* The refusal of a send whose deltas would take field f out of the integers. */
static void agg_refused(const store *s, const char *f, char *err, size_t errlen)
{
    snprintf(err, errlen,
             "redis MULTI/EXEC (apply): ERR fidelio apply: %saggregates field %s would not be an integer; "
             "nothing was written",
             s->prefix, f);
}

/* A field's value must stay strictly inside (-9e18, 9e18), as the script's
 * check (Lua's doubles) keeps it. */
static bool agg_fits(long long v, long long d)
{
    long long r;
    return !__builtin_add_overflow(v, d, &r) && r < 9000000000000000000LL && r > -9000000000000000000LL;
}

/* Check a send's deltas (tot) against the aggregates hash as fetched and
 * what the open transaction already queued (tx): every value the field can
 * take inside EXEC (after the script calls that apply, then after the
 * transaction's HINCRBY) must stay an integer of 64 bits, and the
 * transaction's sum fit one HINCRBY; HINCRBY or a script must not fail
 * inside EXEC, where the other writes would stay. 0, or -1 with the reason
 * in err. */
static int agg_check(store *s, const wtable *t, const aggsums *tot, const aggsums *tx, char *err, size_t errlen)
{
    if (!tot->n)
        return 0;
    if (t->agg_err[0]) {
        snprintf(err, errlen, "redis MULTI/EXEC (apply): %s", t->agg_err);
        return -1;
    }
    for (size_t k = 0; k < tot->n; k++) {
        const aggsum *a = &tot->v[k];
        const char *f = aggsums_key(tot, k);
        const aggsum *q = aggsums_find(tx, f);
        long long v = 0, sum = a->sum, up = a->up, down = a->down, fin;
        bool num = true;
        long i = wt_agg_find(t, f);
        if (i >= 0) {
            v = t->agg[i].val;
            num = t->agg[i].num;
        }
        if (!num || (q && (__builtin_add_overflow(q->sum, sum, &sum) || __builtin_add_overflow(q->up, up, &up) ||
                           __builtin_add_overflow(q->down, down, &down))) ||
            !agg_fits(v, up) || !agg_fits(v, down) || __builtin_add_overflow(v, sum, &fin) || !agg_fits(fin, up) ||
            !agg_fits(fin, down)) {
            agg_refused(s, f, err, errlen);
            return -1;
        }
    }
    return 0;
}

/* Queue the HINCRBYs of the open transaction of the lane commands are queued
 * on (store.qlane) behind its last send (op): 0 or -1. */
static int txagg_queue(store *s, store_op *op)
{
    const aggsums *g = s->txa[s->qlane];
    for (size_t k = 0; g && k < g->n; k++) {
        if (!g->v[k].hincr) /* (only script customers brought it: they add their own) */
            continue;
        argvec a;
        argvec_begin(&a, s);
        arg_s(&a, "HINCRBY");
        arg_f(&a, "%saggregates", s->prefix);
        arg_s(&a, aggsums_key(g, k));
        arg_ll(&a, g->v[k].sum);
        if (tx_queue(s, &a, op, &op->captags, NULL, 0) != 0)
            return -1;
    }
    return 0;
}

/* The sums lane l's checks (agg_check) take as its transaction's: its own
 * open transaction's (store.txa), and every other lane's, open and of this
 * send (send[m]), as bounds only: those lanes' EXECs may run before or after
 * lane l's, so each field may move by their negative or positive parts
 * summed. 0; 1 when a bound would leave 64 bits (*bad); -1 out of memory. */
static int lane_bounds(const store *s, int l, const aggsums *send, aggsums *out, const char **bad)
{
    const aggsums *own = s->txa[l];
    for (size_t k = 0; own && k < own->n; k++) {
        const aggsum *a = &own->v[k];
        int rc = aggsums_add(out, aggsums_key(own, k), a->sum, a->hincr, a->up, a->down);
        if (rc) {
            *bad = aggsums_key(own, k);
            return rc;
        }
    }
    for (int m = 0; m < LANES; m++) {
        const aggsums *gs[2] = {s->txa[m], &send[m]};
        for (int j = 0; j < 2 && m != l; j++)
            for (size_t k = 0; gs[j] && k < gs[j]->n; k++) {
                const aggsum *a = &gs[j]->v[k];
                long long up = a->up, down = a->down;
                int rc = (a->sum > 0 && __builtin_add_overflow(up, a->sum, &up)) ||
                                 (a->sum < 0 && __builtin_add_overflow(down, a->sum, &down))
                             ? 1
                             : aggsums_add(out, aggsums_key(gs[j], k), 0, false, up, down);
                if (rc) {
                    *bad = aggsums_key(gs[j], k);
                    return rc;
                }
            }
    }
    return 0;
}

/* store_apply_send under the WATCH of the fetch the requests were decided on:
 * every customer's writes queued in the MULTI of its lane that EXEC ends
 * (tx_close). scripts: no WATCH in force but the lanes in use (a fetch's
 * transaction closed, another apply of its round follows: the pipeline's
 * levels of in-process credits): every customer is the script's, its calls
 * queued on its lane, so they run before the customer's reads there (on
 * lane 0 they could run after a fetch sent behind them on its lane). */
static int tx_apply_send(store *s, store_apply_req *reqs, size_t n, bool scripts, char *err, size_t errlen)
{
    wtable *t = s->wt;
    int nl = s->wlanes > 1 ? s->wlanes : 1;
    int64_t now = s->now_ms ? s->now_ms : clock_wall_ms();
    size_t ncalls;
    apply_ctx *x = plan_ctx(reqs, n, NULL, now, &ncalls);
    int *how = calloc(n ? n : 1, sizeof(*how));
    aggsums tot[LANES];
    memset(tot, 0, sizeof(tot));
    bool agg_overflow = false;
    store_op op = {.fetch = false, .tx = true, .x = x, .what = "apply"};
    int rc = STORE_PERMANENT;
    unsigned used = 0; /* the lanes this send queues on */
    snprintf(err, errlen, "out of memory");
    if (!x || !how || prepare_ledger(s, x, n) != 0 || !(op.tw = calloc(n ? n : 1, sizeof(*op.tw))))
        goto fail;
    /* decide every customer first: a send refused (aggregates) queues nothing */
    for (size_t b = 0; b < n;) {
        size_t e = b + 1;
        while (e < n && !strcmp(reqs[e].customer_id, reqs[b].customer_id))
            e++;
        int lane = lane_of(reqs[b].customer_id, nl);
        const wcust *w = scripts ? NULL : wt_find(t, reqs[b].customer_id);
        if (w && w->l_wrong) { /* RPUSH would fail inside EXEC, where the other writes stay */
            snprintf(err, errlen,
                     "redis MULTI/EXEC (apply): WRONGTYPE fidelio apply: %s{%s}:l is not a list; nothing was written",
                     s->prefix, reqs[b].customer_id);
            if (s->tx_open)
                drop_connection(s);
            goto fail;
        }
        how[b] = scripts ? TX_SCRIPT : tx_decide(s, t, w, reqs, b, e, now);
        for (size_t i = b + 1; i < e; i++)
            how[i] = how[b];
        if (how[b] == TX_WRITE || how[b] == TX_SCRIPT)
            used |= 1u << lane;
        if (how[b] == TX_WRITE || how[b] == TX_SCRIPT) { /* (the script's: what it may add) */
            agg_sum *sums = NULL;
            size_t ns = 0;
            if (sum_aggregates(reqs, b, e, &sums, &ns) != 0)
                goto fail;
            const char *bad = NULL;
            int ar = aggsums_customer(&tot[lane], sums, ns, how[b] == TX_SCRIPT, &bad);
            if (ar > 0) /* the send's own sum would leave 64 bits */
                agg_refused(s, bad, err, errlen);
            free(sums);
            if (ar < 0)
                goto fail;
            if (ar > 0) {
                agg_overflow = true;
                break;
            }
        }
        b = e;
    }
    for (int l = 0; l < nl && !agg_overflow && !scripts; l++) { /* (the script checks its own) */
        if (!tot[l].n)
            continue;
        if (nl == 1) {
            if (agg_check(s, t, &tot[l], s->txa[l], err, errlen) != 0)
                agg_overflow = true;
            continue;
        }
        aggsums bounds = {0};
        const char *bad = NULL;
        int br = lane_bounds(s, l, tot, &bounds, &bad);
        if (br < 0) {
            aggsums_clear(&bounds);
            goto fail;
        }
        if (br > 0)
            agg_refused(s, bad, err, errlen);
        if (br > 0 || agg_check(s, t, &tot[l], &bounds, err, errlen) != 0)
            agg_overflow = true;
        aggsums_clear(&bounds);
    }
    if (agg_overflow) {
        if (s->tx_open) /* earlier sends of the transaction are queued: the connections (and they) go */
            drop_connection(s);
        goto fail;
    }
    if (!used && !s->tx_open)
        used = 1; /* (nothing to write: an empty MULTI/EXEC on lane 0 still answers the send) */
    apply_ctx **tail = &x->next;
    for (int l = 0; l < nl; l++) {
        if (!(used & (1u << l)))
            continue;
        s->qlane = l;
        if (!(s->txmask & (1u << l))) {
            const char *argv[] = {"MULTI"};
            if (append_argv(s, 1, argv, NULL) != 0)
                goto fail_queued;
            op.opens |= 1u << l;
            s->txmask |= 1u << l;
            s->tx_open = true;
        }
        for (size_t b = 0; b < n;) {
            size_t e = b + 1;
            while (e < n && !strcmp(reqs[e].customer_id, reqs[b].customer_id))
                e++;
            if (lane_of(reqs[b].customer_id, nl) != l) {
                b = e;
                continue;
            }
            if (how[b] == TX_SCRIPT) { /* a run of the lane's customers for the script, in its own calls */
                while (e < n && how[e] == TX_SCRIPT && lane_of(reqs[e].customer_id, nl) == l)
                    e++;
                for (size_t i = b; i < e; i++) {
                    reqs[i].status = STORE_FENCED; /* until EXEC says otherwise */
                    reqs[i].version = 0;
                }
                size_t nc;
                apply_ctx *y = plan_ctx(reqs + b, e - b, NULL, now, &nc);
                if (!y)
                    goto fail_queued;
                *tail = y;
                tail = &y->next;
                if (prepare_ledger(s, y, e - b) != 0)
                    goto fail_queued;
                for (size_t c = 0; c < nc; c++) {
                    if (append_call(s, c, y) != 0 || tx_queue(s, NULL, &op, &op.captags, y, c) != 0)
                        goto fail_queued;
                }
            } else if (how[b] == TX_WRITE) {
                const wcust *w = wt_find(t, reqs[b].customer_id);
                for (size_t i = b; i < e; i++) {
                    reqs[i].status = STORE_FENCED; /* until EXEC says otherwise */
                    reqs[i].version = w->v;
                }
                int wr = tx_write(s, t, w, x, b, e, &op, &op.captags);
                if (wr != 0)
                    goto fail_queued;
                op.tw[op.ntw++] = (txw){.reqs = reqs + b, .n = e - b, .v = w->v, .lane = l};
            }
            b = e;
        }
        /* the outputs of the lane's touchpoints read from a partition: one HSET per source and send */
        for (size_t i = 0; i < n; i++) {
            const store_apply_req *q = &reqs[i];
            if (how[i] != TX_WRITE || !outputs_by_source(q) || !q->outputs || !q->outputs->len ||
                lane_of(q->customer_id, nl) != l)
                continue;
            bool before = false;
            for (size_t j = 0; j < i && !before; j++)
                before = how[j] == TX_WRITE && outputs_by_source(&reqs[j]) && reqs[j].outputs &&
                         reqs[j].outputs->len && reqs[j].partition == q->partition &&
                         reqs[j].source_credits == q->source_credits && lane_of(reqs[j].customer_id, nl) == l;
            if (before) /* (written with the first of its source) */
                continue;
            argvec a;
            argvec_begin(&a, s);
            arg_s(&a, "HSET");
            arg_f(&a, "%so:%c%d", s->prefix, q->source_credits ? 'c' : 't', (int)q->partition);
            for (size_t j = i; j < n; j++) {
                const store_apply_req *r = &reqs[j];
                if (how[j] == TX_WRITE && outputs_by_source(r) && r->outputs && r->outputs->len &&
                    r->partition == q->partition && r->source_credits == q->source_credits &&
                    lane_of(r->customer_id, nl) == l) {
                    output_field(&a, r->offset, r->credit, r->customer_id, r->id);
                    arg(&a, r->outputs->data, r->outputs->len);
                    ow_note_req(s, r);
                }
            }
            if (tx_queue(s, &a, &op, &op.captags, NULL, 0) != 0)
                goto fail_queued;
        }
        /* the deltas: summed with the lane's transaction's other sends', added at its EXEC (tx_close) */
        if (!s->txa[l] && !(s->txa[l] = calloc(1, sizeof(*s->txa[l]))))
            goto fail_queued;
        for (size_t k = 0; k < tot[l].n; k++) {
            const aggsum *a = &tot[l].v[k];
            if (aggsums_add(s->txa[l], aggsums_key(&tot[l], k), a->sum, a->hincr, a->up, a->down) != 0)
                goto fail_queued; /* (agg_check made sure it fits: out of memory) */
        }
    }
    s->qlane = 0;
    free(how);
    for (int l = 0; l < LANES; l++)
        aggsums_clear(&tot[l]);
    return send_done(s, &op, err, errlen);
fail_queued: /* commands half appended: the connections go (Redis discards the MULTIs with them) */
    s->qlane = 0;
    snprintf(err, errlen, "out of memory");
    drop_connection(s);
fail:
    op_free(&op);
    free(how);
    for (int l = 0; l < LANES; l++)
        aggsums_clear(&tot[l]);
    return rc;
}

/* Read the replies of a transaction (one MULTI/EXEC per lane it used): its
 * sends' QUEUED, then each lane's EXEC. A command refused when queued
 * (NOPERM, OOM) aborts its lane's transaction: nothing of it written. An
 * EXEC's nil (a key its lane watched changed since the fetch: another
 * writer) leaves every customer of that lane FENCED, decided again on a
 * fresh fetch; the other lanes' apply. */
static int tx_recv(store *s, char *err, size_t errlen)
{
    store_op *grp = NULL;
    size_t ng = 0, capg = 0;
    int rc = 0, qrc = 0;
    char qerr[700] = "";
    bool closed = false, lost = false;
    unsigned exec_mask = 0;
    while (!closed) {
        if (s->opshead == s->nops || !s->ops[s->opshead].tx) {
            snprintf(err, errlen, "redis MULTI/EXEC (apply): a transaction without its EXEC (a bug)");
            rc = STORE_PERMANENT;
            lost = true;
            break;
        }
        if (ng == capg) {
            store_op *g = grow_array(grp, &capg, sizeof(*g), 8);
            if (!g) {
                snprintf(err, errlen, "out of memory");
                rc = STORE_PERMANENT;
                lost = true;
                break;
            }
            grp = g;
        }
        store_op *op = &grp[ng++];
        *op = s->ops[s->opshead++];
        closed = op->execs;
        exec_mask = op->exec_mask;
        /* each lane's MULTI first (sent before its commands), then the commands, each on its lane */
        size_t nopen = 0;
        for (int l = 0; l < LANES; l++)
            nopen += !!(op->opens & (1u << l));
        for (size_t i = 0; i < nopen + op->nq; i++) {
            int lane = 0;
            if (i < nopen) {
                for (unsigned m = op->opens, k = 0;; m &= m - 1, k++)
                    if (k == i) {
                        lane = __builtin_ctz(m);
                        break;
                    }
            } else
                lane = op->tags[i - nopen].lane;
            redisReply *r;
            if (get_lane_reply(s, lane, &r, "MULTI/EXEC (apply)", err, errlen) != 0) {
                rc = STORE_TRANSIENT;
                lost = true;
                break;
            }
            if (r->type == REDIS_REPLY_ERROR && !qrc) {
                snprintf(qerr, sizeof(qerr), "%s", r->str);
                qrc = reply_class(r);
            }
            freeReplyObject(r);
        }
        if (lost)
            break;
    }
    for (int l = 0; l < LANES && !lost; l++) {
        if (!(exec_mask & (1u << l)))
            continue;
        redisReply *r = NULL;
        if (get_lane_reply(s, l, &r, "EXEC (apply)", err, errlen) != 0) {
            rc = STORE_TRANSIENT;
            lost = true;
            break;
        }
        if (r->type == REDIS_REPLY_ERROR) { /* EXECABORT: nothing of the lane ran */
            snprintf(err, errlen, "redis MULTI/EXEC (apply): %s; nothing was written (%.60s)", qerr[0] ? qerr : r->str,
                     r->str);
            rc = qrc ? qrc : reply_class(r);
        } else if (r->type == REDIS_REPLY_ARRAY) {
            size_t k = 0;
            for (size_t g = 0; g < ng; g++) {
                const store_op *op = &grp[g];
                for (size_t i = 0; i < op->nq; i++) {
                    if (op->tags[i].lane != l)
                        continue;
                    const redisReply *e = k < r->elements ? r->element[k] : NULL;
                    k++;
                    if (!e) {
                        snprintf(err, errlen, "redis EXEC (apply): %zu replies for more commands", r->elements);
                        rc = STORE_PERMANENT;
                        continue;
                    }
                    if (e->type == REDIS_REPLY_ERROR) {
                        bool noscript = !strncmp(e->str, "NOSCRIPT", 8);
                        int cls = noscript ? STORE_TRANSIENT : reply_class(e);
                        if (rc == 0 || (cls == STORE_PERMANENT && rc != STORE_PERMANENT)) {
                            snprintf(err, errlen, "redis %s (apply): %s%s", op->tags[i].x ? "EVALSHA" : "EXEC", e->str,
                                     noscript ? " (script cache flushed: reconnecting)"
                                              : " (inside EXEC: the transaction's other writes were made)");
                            rc = cls;
                        }
                        if (noscript)
                            lost = true; /* the reconnection loads the script again */
                    } else if (op->tags[i].x && call_reply(e, op->tags[i].call, op->tags[i].x, err, errlen) != 0) {
                        rc = STORE_PERMANENT;
                    }
                }
                for (size_t w = 0; w < op->ntw; w++)
                    if (op->tw[w].lane == l)
                        for (size_t i = 0; i < op->tw[w].n; i++) {
                            op->tw[w].reqs[i].status = STORE_APPLIED;
                            op->tw[w].reqs[i].version = op->tw[w].v + (int64_t)i + 1;
                        }
            }
        } /* nil: a key the lane watched changed; every request of it stays FENCED */
        freeReplyObject(r);
    }
    for (size_t g = 0; g < ng; g++)
        op_free(&grp[g]);
    free(grp);
    if (lost)
        drop_connection(s);
    return rc;
}

int store_apply_send(store *s, store_apply_req *reqs, size_t n, char *err, size_t errlen)
{
    bool lanes_ok = true;
    for (int l = 1; l < s->wlanes && l < LANES; l++)
        lanes_ok &= s->lc[l] && !s->lc[l]->err;
    if (!s->readonly && s->watching && s->wready && s->c && !s->c->err && lanes_ok)
        return tx_apply_send(s, reqs, n, false, err, errlen);
    if (!s->readonly && s->wlanes > 1 && s->wt && s->c && !s->c->err && lanes_ok)
        return tx_apply_send(s, reqs, n, true, err, errlen);
    size_t ncalls;
    apply_ctx *x = plan_ctx(reqs, n, NULL, s->now_ms ? s->now_ms : clock_wall_ms(), &ncalls);
    if (!x) {
        snprintf(err, errlen, "out of memory");
        return STORE_PERMANENT;
    }
    int rc = send_ready(s, err, errlen); /* (compact entries may register a program digest) */
    if (rc == 0 && prepare_ledger(s, x, n) != 0) {
        snprintf(err, errlen, "out of memory");
        rc = STORE_PERMANENT;
    }
    if (rc) {
        apply_ctx_free(x);
        return rc;
    }
    return script_send(s, x, ncalls, "apply", err, errlen);
}

int store_apply_recv(store *s, char *err, size_t errlen)
{
    int rc = tx_close(s, err, errlen); /* (failed: the loop meets the sends lost with the connection) */
    do {
        char e[1024];
        int r1 = s->opshead < s->nops && s->ops[s->opshead].tx ? tx_recv(s, e, sizeof(e))
                                                                : script_recv(s, NULL, e, sizeof(e));
        if (r1 && (rc == 0 || (r1 == STORE_PERMANENT && rc != STORE_PERMANENT))) {
            snprintf(err, errlen, "%s", e);
            rc = r1;
        }
        if (r1 == STORE_TRANSIENT && !s->c) /* the rest went with the connection */
            break;
    } while (s->opshead < s->nops && !s->ops[s->opshead].fetch);
    return rc;
}

int store_apply(store *s, store_apply_req *reqs, size_t n, char *err, size_t errlen)
{
    if (n == 0)
        return 0;
    int rc = store_apply_send(s, reqs, n, err, errlen);
    return rc ? rc : store_apply_recv(s, err, errlen);
}

void store_set_now(store *s, int64_t now_ms) { s->now_ms = now_ms; }

void store_set_lane_min(store *s, size_t n) { s->lane_min = n; }

int store_lane_of(const char *customer_id) { return lane_of(customer_id, LANES); }

int store_trim(store *s, const char *const *customer_ids, size_t n, int64_t now_ms, long long *trimmed, char *err,
               size_t errlen)
{
    size_t ncalls;
    *trimmed = 0;
    if (n == 0)
        return 0;
    apply_ctx *x = plan_ctx(NULL, n, customer_ids, now_ms, &ncalls);
    if (!x) {
        snprintf(err, errlen, "out of memory");
        return STORE_PERMANENT;
    }
    int rc = script_send(s, x, ncalls, "trim", err, errlen);
    return rc ? rc : script_recv(s, trimmed, err, errlen);
}

/* ---- tools ---------------------------------------------------------------------- */

int store_ledger(store *s, const char *customer_id, long n, buf *out, char *err, size_t errlen)
{
    char k[EVENT_KEY_MAX], why[256];
    int crc0 = ensure_connected(s, err, errlen);
    if (crc0)
        return crc0;
    if (!s->codec && !(s->codec = codec_new(SIZE_MAX, why, sizeof(why)))) {
        snprintf(err, errlen, "ledger decoder: %s", why);
        return STORE_PERMANENT;
    }
    key(s, customer_id, 'l', k, sizeof(k));
    redisReply *r = redisCommand(s->c, "LRANGE %s %ld -1", k, -n);
    int crc = command_ok(s->c, r, "LRANGE", err, errlen);
    if (crc)
        return crc;
    int rc = 0;
    codec_record rec = {0};
    for (size_t i = 0; i < r->elements && rc == 0; i++) {
        const redisReply *e = r->element[i];
        if (e->len > 0 && e->str[0] == '{') { /* layout 2 kept JSON (an Avro RewardEvent never starts so) */
            rc = buf_append(out, e->str, e->len) || buf_puts(out, "\n") ? STORE_PERMANENT : 0;
            if (rc)
                snprintf(err, errlen, "out of memory");
            continue;
        }
        if (ledger_decode(s, customer_id, e->str, e->len, &rec, why, sizeof(why)) != 0) {
            snprintf(err, errlen, "ledger entry %zu of %s is not a RewardEvent: %s", i + 1, k, why);
            rc = STORE_PERMANENT;
        } else if (codec_encode_json(SCHEMA_REWARD, &rec, out) != EVENT_OK || buf_puts(out, "\n")) {
            snprintf(err, errlen, "out of memory");
            rc = STORE_PERMANENT;
        }
        codec_record_free(&rec);
    }
    freeReplyObject(r);
    return rc;
}

/* Called with each page of SCAN's keys; 0 goes on, anything else stops the
 * scan and is returned (err set by the callback). */
typedef int (*scan_page_fn)(store *s, const redisReply *keys, void *opaque, char *err, size_t errlen);

/* SCAN the keys matching pattern, a page (COUNT 1000) at a time. The caller
 * has connected. 0, a command_ok code, or what page returned. */
static int scan_keys(store *s, const char *pattern, scan_page_fn page, void *opaque, char *err, size_t errlen)
{
    char cursor[32] = "0";
    do {
        redisReply *r = redisCommand(s->c, "SCAN %s MATCH %s COUNT 1000", cursor, pattern);
        int crc = command_ok(s->c, r, "SCAN", err, errlen);
        if (crc)
            return crc;
        snprintf(cursor, sizeof(cursor), "%s", r->element[0]->str);
        int rc = page(s, r->element[1], opaque, err, errlen);
        freeReplyObject(r);
        if (rc)
            return rc;
    } while (strcmp(cursor, "0") != 0);
    return 0;
}

static int customers_page(store *s, const redisReply *keys, void *opaque, char *err, size_t errlen)
{
    buf *out = opaque;
    size_t plen = strlen(s->prefix) + 1;
    for (size_t i = 0; i < keys->elements; i++) {
        const redisReply *k = keys->element[i];
        if (k->len > plen + 3 && /* prefix { id }:p */
            (buf_append(out, k->str + plen, k->len - plen - 3) || buf_puts(out, "\n"))) {
            snprintf(err, errlen, "out of memory");
            return -1;
        }
    }
    return 0;
}

int store_customers(store *s, buf *out, char *err, size_t errlen)
{
    char pattern[160];
    int crc0 = ensure_connected(s, err, errlen);
    if (crc0)
        return crc0;
    snprintf(pattern, sizeof(pattern), "%s{*}:p", s->prefix);
    return scan_keys(s, pattern, customers_page, out, err, errlen);
}

/* ---- the namespace's program registry (see store.h) ---------------------------- */

int store_registry_read(store *s, store_registry *reg, char *err, size_t errlen)
{
    memset(reg, 0, sizeof(*reg));
    if (ensure_connected(s, err, errlen) != 0)
        return -1;
    redisReply *r = redisCommand(s->c, "HMGET %sprogram version digest", s->prefix);
    if (command_ok(s->c, r, "HMGET program", err, errlen))
        return -1;
    if (r->type == REDIS_REPLY_ARRAY && r->elements == 2 && r->element[0]->type == REDIS_REPLY_STRING) {
        reg->has_program = true;
        snprintf(reg->version, sizeof(reg->version), "%s", r->element[0]->str);
        if (r->element[1]->type == REDIS_REPLY_STRING)
            snprintf(reg->digest, sizeof(reg->digest), "%s", r->element[1]->str);
    }
    freeReplyObject(r);
    r = redisCommand(s->c, "SMEMBERS %sstages", s->prefix);
    if (command_ok(s->c, r, "SMEMBERS stages", err, errlen))
        return -1;
    for (size_t i = 0; r->type == REDIS_REPLY_ARRAY && i < r->elements; i++) {
        if (r->element[i]->type != REDIS_REPLY_STRING)
            continue;
        if (buf_append(&reg->stages, r->element[i]->str, r->element[i]->len) || buf_append(&reg->stages, "", 1)) {
            freeReplyObject(r);
            snprintf(err, errlen, "out of memory");
            return -1;
        }
        reg->nstages++;
    }
    freeReplyObject(r);
    return 0;
}

int store_registry_write(store *s, const char *version, const char *digest, const buf *stage_refs, char *err,
                         size_t errlen)
{
    char k[120];
    if (s->readonly) {
        snprintf(err, errlen, "store opened read-only");
        return -1;
    }
    if (ensure_connected(s, err, errlen) != 0)
        return -1;
    size_t n = 0;
    for (size_t i = 0; i < stage_refs->len; i++)
        n += stage_refs->data[i] == '\n';
    const char **argv = malloc((n + 2) * sizeof(*argv));
    size_t *lens = malloc((n + 2) * sizeof(*lens));
    if (!argv || !lens) {
        free(argv);
        free(lens);
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    snprintf(k, sizeof(k), "%sstages", s->prefix);
    argv[0] = "SADD";
    lens[0] = 4;
    argv[1] = k;
    lens[1] = strlen(k);
    size_t argc = 2;
    for (const char *p = stage_refs->data, *end = p ? p + stage_refs->len : NULL; p && p < end;) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        if (!nl)
            break;
        argv[argc] = p;
        lens[argc++] = (size_t)(nl - p);
        p = nl + 1;
    }
    int rc = 0;
    if (argc > 2) {
        redisReply *r = redisCommandArgv(s->c, (int)argc, argv, lens);
        rc = command_ok(s->c, r, "SADD stages", err, errlen);
        if (rc == 0)
            freeReplyObject(r);
    }
    free(argv);
    free(lens);
    if (rc != 0)
        return -1;
    redisReply *r = redisCommand(s->c, "HSET %sprogram version %s digest %s", s->prefix, version, digest);
    if (command_ok(s->c, r, "HSET program", err, errlen))
        return -1;
    freeReplyObject(r);
    /* its number for the ledger entries (0 on a failure: entries then name it in full) */
    (void)program_ref_of(s, version, strlen(version), digest, strlen(digest));
    return 0;
}

void store_registry_free(store_registry *reg) { buf_free(&reg->stages); }

int store_aggregates_incomplete(store *s, char *err, size_t errlen)
{
    if (ensure_connected(s, err, errlen) != 0)
        return -1;
    redisReply *r = redisCommand(s->c, "HSET %saggregates complete 0", s->prefix);
    if (command_ok(s->c, r, "HSET aggregates", err, errlen))
        return -1;
    freeReplyObject(r);
    return 0;
}

int store_ping(store *s, char *err, size_t errlen)
{
    if (ensure_connected(s, err, errlen) != 0)
        return -1;
    redisReply *r = redisCommand(s->c, "PING");
    if (command_ok(s->c, r, "PING", err, errlen))
        return -1; /* a lost connection is made again on the next call */
    freeReplyObject(r);
    return 0;
}

int store_aggregates(store *s, buf *out, size_t *n, char *err, size_t errlen)
{
    *n = 0;
    if (ensure_connected(s, err, errlen) != 0)
        return -1;
    redisReply *r = redisCommand(s->c, "HGETALL %saggregates", s->prefix);
    if (command_ok(s->c, r, "HGETALL aggregates", err, errlen))
        return -1;
    int rc = 0;
    for (size_t i = 0; i + 1 < r->elements && !rc; i += 2) {
        const redisReply *f = r->element[i], *v = r->element[i + 1];
        if (f->len == sizeof(AGG_HASHTABLE_FIELD) - 1 && !memcmp(f->str, AGG_HASHTABLE_FIELD, f->len))
            continue; /* (no figure: what keeps the hash a hashtable) */
        rc = buf_append(out, f->str, f->len) || buf_append(out, "", 1) || buf_append(out, v->str, v->len) ||
             buf_append(out, "", 1);
        (*n)++;
    }
    freeReplyObject(r);
    if (rc)
        snprintf(err, errlen, "out of memory");
    return rc ? -1 : 0;
}

int store_aggregates_add(store *s, const char *const *pairs, size_t n, char *err, size_t errlen)
{
    char k[EVENT_KEY_MAX];
    if (n == 0)
        return 0;
    if (s->readonly) {
        snprintf(err, errlen, "store opened read-only");
        return -1;
    }
    if (ensure_connected(s, err, errlen) != 0)
        return -1;
    snprintf(k, sizeof(k), "%saggregates", s->prefix);
    for (size_t i = 0; i < n; i++) {
        const char *argv[] = {"HINCRBY", k, pairs[2 * i], pairs[2 * i + 1]};
        redisAppendCommandArgv(s->c, 4, argv, NULL);
    }
    int rc = 0;
    for (size_t i = 0; i < n; i++) {
        redisReply *r;
        if (get_reply(s, &r, "HINCRBY (aggregates)", err, errlen) != 0)
            return STORE_TRANSIENT;
        if (r->type == REDIS_REPLY_ERROR) {
            int cls = reply_class(r);
            snprintf(err, errlen, "redis HINCRBY (aggregates): %s", r->str);
            if (rc == 0 || cls == STORE_PERMANENT)
                rc = cls;
        }
        freeReplyObject(r);
    }
    return rc;
}

struct profiles_scan {
    store_profile_fn fn;
    void *opaque;
    long long *n;
};

/* One pipelined HGETALL per key of the page (the profile's pieces); every
 * reply is read even after fn failed, so the connection stays in step. */
static int profiles_page(store *s, const redisReply *keys, void *opaque, char *err, size_t errlen)
{
    struct profiles_scan *ps = opaque;
    for (size_t i = 0; i < keys->elements; i++) {
        const char *argv[] = {"HGETALL", keys->element[i]->str};
        size_t lens[] = {7, keys->element[i]->len};
        redisAppendCommandArgv(s->c, 2, argv, lens);
    }
    int rc = 0;
    buf prof = {0};
    for (size_t i = 0; i < keys->elements; i++) {
        redisReply *v;
        if (get_reply(s, &v, "HGETALL (profile)", err, errlen) != 0) {
            buf_free(&prof);
            return STORE_TRANSIENT;
        }
        pfields pf;
        buf_reset(&prof);
        if (rc == 0 && pfields_read(v, &pf, &prof) != 0)
            rc = -1;
        if (rc == 0 && pf.has_p) {
            (*ps->n)++;
            rc = ps->fn(ps->opaque, prof.len ? prof.data : "", prof.len);
        }
        freeReplyObject(v);
    }
    buf_free(&prof);
    if (rc != 0) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    return 0;
}

int store_scan_profiles(store *s, store_profile_fn fn, void *opaque, long long *n, char *err, size_t errlen)
{
    char pattern[160];
    struct profiles_scan ps = {fn, opaque, n};
    *n = 0;
    if (ensure_connected(s, err, errlen) != 0)
        return -1;
    snprintf(pattern, sizeof(pattern), "%s{*}:p", s->prefix);
    return scan_keys(s, pattern, profiles_page, &ps, err, errlen);
}

struct keys_count {
    bool wipe;
    long long *n;
};

/* Count the page's keys and, when wiping, UNLINK each. */
static int namespace_keys_page(store *s, const redisReply *keys, void *opaque, char *err, size_t errlen)
{
    struct keys_count *kc = opaque;
    *kc->n += (long long)keys->elements;
    for (size_t i = 0; kc->wipe && i < keys->elements; i++) {
        redisReply *d = redisCommand(s->c, "UNLINK %b", keys->element[i]->str, keys->element[i]->len);
        int drc = command_ok(s->c, d, "UNLINK", err, errlen);
        if (drc)
            return drc;
        freeReplyObject(d);
    }
    return 0;
}

int store_namespace_keys(store *s, bool wipe, long long *n, char *err, size_t errlen)
{
    char pattern[200];
    size_t k = 0;
    *n = 0;
    if (wipe && s->readonly) {
        snprintf(err, errlen, "a read-only store cannot wipe");
        return STORE_PERMANENT;
    }
    if (ensure_connected(s, err, errlen) != 0)
        return STORE_TRANSIENT;
    for (const char *p = s->prefix; *p && k + 3 < sizeof(pattern); p++) { /* the prefix, glob characters escaped */
        if (strchr("*?[]\\", *p))
            pattern[k++] = '\\';
        pattern[k++] = *p;
    }
    pattern[k++] = '*';
    pattern[k] = '\0';
    struct keys_count kc = {wipe, n};
    return scan_keys(s, pattern, namespace_keys_page, &kc, err, errlen);
}

int store_meta_get(store *s, const char *name, buf *out, bool *found, char *err, size_t errlen)
{
    *found = false;
    buf_reset(out);
    if (ensure_connected(s, err, errlen) != 0)
        return STORE_TRANSIENT;
    redisReply *r = redisCommand(s->c, "GET %s%s", s->prefix, name);
    int rc = command_ok(s->c, r, "GET", err, errlen);
    if (rc)
        return rc;
    if (r->type == REDIS_REPLY_STRING) {
        *found = true;
        if (buf_append(out, r->str, r->len) != 0 || buf_append(out, "", 1) != 0) {
            freeReplyObject(r);
            snprintf(err, errlen, "out of memory");
            return STORE_PERMANENT;
        }
        out->len--; /* NUL-terminated, not counted */
    }
    freeReplyObject(r);
    return 0;
}

int store_meta_set(store *s, const char *name, const char *value, size_t len, const char *const *agg_pairs, size_t n,
                   char *err, size_t errlen)
{
    if (ensure_connected(s, err, errlen) != 0)
        return STORE_TRANSIENT;
    redisAppendCommand(s->c, "MULTI");
    for (size_t i = 0; i < n; i++)
        redisAppendCommand(s->c, "HINCRBY %saggregates %s %s", s->prefix, agg_pairs[2 * i], agg_pairs[2 * i + 1]);
    redisAppendCommand(s->c, "SET %s%s %b", s->prefix, name, value, len);
    redisAppendCommand(s->c, "EXEC");
    int rc = 0;
    for (size_t i = 0; i < n + 3; i++) { /* read every reply, keep the first error */
        redisReply *r;
        if (get_reply(s, &r, "MULTI/EXEC (progress)", err, errlen) != 0)
            return STORE_TRANSIENT;
        if (rc == 0 && r->type == REDIS_REPLY_ERROR) {
            rc = reply_class(r);
            snprintf(err, errlen, "redis MULTI/EXEC (progress): %s", r->str);
        } else if (rc == 0 && i == n + 2) { /* EXEC: nil if aborted, else the replies */
            for (size_t k = 0; r->type == REDIS_REPLY_ARRAY && k < r->elements; k++)
                if (r->element[k]->type == REDIS_REPLY_ERROR && rc == 0) {
                    rc = reply_class(r->element[k]);
                    snprintf(err, errlen, "redis MULTI/EXEC (progress): %s", r->element[k]->str);
                }
            if (r->type != REDIS_REPLY_ARRAY && rc == 0) {
                rc = STORE_TRANSIENT;
                snprintf(err, errlen, "redis MULTI/EXEC (progress): the transaction was aborted");
            }
        }
        freeReplyObject(r);
    }
    return rc;
}

void store_profile_free(store_profile *p) { buf_free(&p->encoding); }
void store_seen_free(store_seen *s) { buf_free(&s->recorded); }
void store_apply_req_free(store_apply_req *r) { buf_free(&r->recorded); }
