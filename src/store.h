/* store.h - Fidelio's state in Redis: atomic, idempotent, fenced applies.
 *
 * REDIS LAYOUT, version 8 (STORE_LAYOUT_VERSION). Every key of a customer
 * carries the customer id as a hash tag, so all of them live in one hash
 * slot (Redis Cluster) and one Lua script may touch them atomically:
 *
 *   <prefix>{<customer>}:p   HASH   v      version: +1 per applied event (the fencing token)
 *                                   p      profile encoding (profile.h, versioned: version 4 names
 *                                          no customer, the key does; 1-3 still read): its first
 *                                          STORE_PROFILE_PIECE (64) bytes, the whole of a shorter one
 *                                   p1 p2 ... the next pieces of 64 bytes of a longer one (the last
 *                                          may be shorter), none past it; at most
 *                                          STORE_PROFILE_PIECES_MAX (8) pieces: a longer profile is
 *                                          whole in p (LAYOUT 7 below; layout <= 6: always whole)
 *                                   hw     high-water event time of the customer's own
 *                                          touchpoints (epoch ms); credits never move it
 *                                   tf     trim horizon: dedupe records of touchpoints
 *                                          before it may have been removed
 *                                   tn     the oldest event time of the customer's records
 *                                          in :d ("" none). Absent: a customer last written
 *                                          by layout <= 3, whose records may still be indexed
 *                                          in :t (LAYOUT 3 below)
 *                                   o<k><id> the recorded outputs (the exact Kafka keys and Avro
 *                                          bytes) of an event whose batch may not be committed
 *                                          yet; <k> is t (touchpoint) or c (credit), <id> its id.
 *                                          Layout 6: only a credit's and those of a touchpoint
 *                                          with no source (tools, tests); a touchpoint read from a
 *                                          partition keeps them in <prefix>o:<source> (below).
 *                                          Layout 8: only an event's with no source (tools,
 *                                          tests) and a credit's a layout-7 apply kept (LAYOUT 8)
 *                                   po     the list of those: per event its kind (t, c), its
 *                                          source ("t<partition>" of the touchpoints topic,
 *                                          "c<partition>" of the credits topic, "" unknown:
 *                                          tools, tests), "/", its offset, NUL, its id, NUL.
 *                                          Dropped once committed (THE APPLY, step 1)
 *   <prefix>{<customer>}:d   HASH   <event id> -> dedupe record: "\x06" + the first 8 bytes of
 *                                   the touchpoint's content digest (digest.h), then as zigzag
 *                                   varints (Avro's long) its event time (epoch ms), its source
 *                                   (2 x partition, + 1 for the credits topic) and its offset:
 *                                   ~17 bytes (6 for a time of this century, 1-2 for the source,
 *                                   1-5 for the offset), no outputs (small values keep the hash a
 *                                   compact listpack). "\x05" + 8 bytes of digest + the time: a
 *                                   touchpoint with no source (tools, tests: outputs in :p).
 *                                   Layout 4-5's "\x04" + the whole digest + the time in decimal
 *                                   (30 bytes) read as before (LAYOUT 5)
 *   <prefix>{<customer>}:t   ZSET   layout <= 3 only: ids of :d scored by event time; no longer
 *                                   written, emptied by the trim (LAYOUT 3 below)
 *   <prefix>{<customer>}:c   HASH   <credit id> -> dedupe record of the credit (never trimmed, see
 *                                   CREDITS): layout 8's "\x06" + the first 8 bytes of its content
 *                                   digest, then as varints 0 (no time), its source (2 x
 *                                   partition, + 1 read from the credits topic; an in-process
 *                                   credit: its touchpoint's) and offset (~12 bytes; its outputs
 *                                   wait in <prefix>o:<source>); "\x03" + the whole digest: a
 *                                   credit with no source (tools, tests) or written by layout <= 7
 *   <prefix>{<customer>}:l   LIST   ledger: one entry per balance change, oldest first, the
 *                                   newest pipeline.ledger_max kept: the RewardEvent published
 *                                   to Kafka less its reason, binary (THE LEDGER below;
 *                                   `fidelio ledger` decodes them)
 *   <prefix>o:<source>       HASH   "<offset>/t<customer>" NUL "<event id>" -> the recorded
 *                                   outputs of a touchpoint read at that offset of that source
 *                                   ("t<partition>"); layout 8: "<offset>/c<customer>" NUL "<credit
 *                                   id>" -> a credit's, in its source ("c<partition>" of the
 *                                   credits topic; applied in process: its touchpoint's "t<p>"
 *                                   and offset), written in the apply; HDEL'd once the commit
 *                                   passes the end of its block of 256 offsets (OUTPUTS AFTER
 *                                   THE COMMIT). Not slot-bound:
 *                                   Redis Cluster would need it per customer slot
 *   <prefix>layout           STRING "8": written on first use by `run`; "1" to "7" are upgraded
 *                                   (below); another value stops fidelio. Read-only tools
 *                                   (store_open_readonly) only read it and write nothing, so
 *                                   they also work on a read-only replica.
 *   <prefix>program          HASH   version, digest: the rule program the namespace last ran
 *                                   (written by `fidelio run` at start-up; read by `check
 *                                   --namespace`). Same version with another digest: a warning
 *   <prefix>stages           SET    every "ladder:stage" a program run on this namespace could
 *                                   have stored in a profile (each run adds its stages and
 *                                   their renamed_from names; nothing is ever removed). A
 *                                   program that can read one of them back neither as a stage
 *                                   nor through renamed_from, and does not list it in
 *                                   retired_stages, is refused by `run` and `check --namespace`.
 *                                   A namespace without <prefix>program (its profiles predate
 *                                   the registry) has its profiles scanned for their stages once
 *   <prefix>ledger_programs  HASH   the rule programs the ledger entries name by number:
 *                                   "<n>" -> version NUL digest, "=" version NUL digest -> "<n>",
 *                                   "next" -> the last number given (HINCRBY). Written outside
 *                                   the apply when a program is first seen (store_registry_write
 *                                   at `run`'s start-up, else before the entry's apply: HGET,
 *                                   HINCRBY, HSETNX "<n>" then HSETNX "="); never removed
 *   <prefix>digests          HASH   layout 4 only: <ref> -> program digest (the 16 hex digits
 *                                   after "sha256:") its ledger entries refer to; no longer
 *                                   written, read by `fidelio ledger` for those entries
 *   <prefix>aggregates       HASH   the report's counters (fields in report.h), incremented by
 *                                   the apply script in the same atomic apply; "complete" is
 *                                   set when the namespace is created; "hashtable", a text of
 *                                   ~1,200 bytes written by `run` at start-up (HSETNX), keeps it a
 *                                   hashtable (THE AGGREGATES A HASHTABLE below; no figure:
 *                                   store_aggregates leaves it out). (Not slot-bound: with
 *                                   Redis Cluster it must become one hash per slot.)
 *
 * No key has a TTL. Redis must never evict them: store_open (and every
 * reconnection) reads maxmemory_policy with INFO memory and refuses any
 * allkeys-* policy; noeviction (the one to use) and volatile-* are accepted.
 *
 * THE APPLY: OPTIMISTIC TRANSACTIONS (the hot path, no Lua). A writable
 * store's fetch (store_fetch_send) is: the HDELs of committed outputs and
 * the HGETALLs of sources not yet looked at (OUTPUTS AFTER THE COMMIT; none
 * for most fetches), UNWATCH (when a WATCH is still in
 * force: a fetch whose batch applied nothing), WATCH of the :p of its first
 * 512 customers per lane (WATCH_MAX; LANES below), then per customer HGETALL :p (the profile's pieces) and
 * LLEN :l (watched customers), per run of a customer's ids one HMGET of :d
 * (credits: of :c, then of :d: layout 1), and HGETALL <prefix>aggregates.
 * What it read is kept per customer (store.c: the watched table). The
 * applies that follow (store_apply_send, once or more: the pipeline streams
 * its groups of customers) decide in C, from that table, exactly what the
 * script decides (below), and queue the writes in ONE MULTI (per lane): HSET :p (v + n,
 * the last event's profile in its pieces, hw, a source-less event's outputs
 * o<k><id>, po and tn when they change), HDEL :p of the outputs committed
 * (step 1) and of pieces past the profile's (a rebuild of :p: LAYOUT 7), HSET :d / HSET :c of the records, RPUSH :l, LTRIM :l only when
 * LLEN + the new entries pass ledger_max, HSET <prefix>o:<source> of the
 * touchpoints' outputs (one per source and send); and one HINCRBY per
 * aggregate field and transaction: the deltas of all its sends summed by
 * field, queued with the EXEC. The EXEC goes
 * behind the last apply send: sent by the next fetch (before its WATCH: EXEC
 * ends every WATCH of the connection, so the read-ahead fetch of batch n+1
 * watches after batch n's EXEC and reads what it wrote) or by
 * store_apply_recv. The data written is byte for byte the script's (the
 * layout stays: nothing to migrate; the test tx_writes_what_the_script_writes).
 *   - LANES: a fetch of 256 customers or more (store_set_lane_min) spreads
 *     them over two connections ("lanes") by a hash of the id (lane_of):
 *     each lane sends its own UNWATCH/WATCH and its customers' reads, and
 *     queues their writes in its own MULTI/EXEC, with its own HINCRBY per
 *     aggregate field (its customers' deltas); the first lane carries the
 *     rest (the drops, the scans, HGETALL of the aggregates, a fetch's second
 *     round trip). Why: Redis 7.0's WATCH checks each key against every key
 *     the connection already watches, so n keys cost ~n^2 (one WATCH of 256
 *     keys 375 us, of 512 1,947 us, measured): two lanes of n/2 cost half,
 *     for ~60 more HINCRBY per round. A customer's reads and writes always go
 *     on its lane, in order, so a fetch reads what every apply sent before it
 *     wrote: the lanes (one or two) change only at a fetch sent with nothing
 *     in flight (a fetch sent behind applies keeps theirs), and while the
 *     lanes are in use an apply without a WATCH in force (the pipeline's
 *     later levels of in-process credits) queues each customer's script calls
 *     on its lane too, in a MULTI/EXEC per lane. (A decision that writes
 *     nothing, a DLQ, is never checked by an EXEC: a read on the wrong lane
 *     would go unseen; seen in e2e_replay with every fetch on the lanes,
 *     before these two rules.) Everything below holds per lane: "the
 *     transaction" is a lane's.
 *   - Fencing: EXEC answers nil when a watched :p changed after the fetch (any
 *     client: another instance, a zombie, this connection outside the
 *     transaction): nothing of the transaction ran, every request of it is
 *     FENCED and the pipeline decides it again on a fresh fetch (as before).
 *     One foreign write fences the whole transaction (a batch's round on that
 *     lane), not only its customer; the other lane's applies. A version that
 *     already differs at the fetch is FENCED in C, nothing queued.
 *   - Atomicity: Redis 7 refuses a command when it is queued (NOPERM: ACL;
 *     OOM: maxmemory, any command inside MULTI; verified on 7.0.15) and EXEC
 *     then aborts the whole transaction (EXECABORT): nothing of it written
 *     (the other lane's may have run: store_apply returns the error, each
 *     request keeps its status, a customer is never half-written). Errors
 *     raised while EXEC runs (WRONGTYPE) do NOT undo the other commands, so
 *     they are excluded by the reads under WATCH: :p (HGETALL), :d and :c (HMGET
 *     of the batch's ids) fail the fetch when of another type, as before; an
 *     :l that is not a list (LLEN) or an aggregates hash that cannot take
 *     HINCRBY (not a hash, a field not an integer or that would leave
 *     (-9e18, 9e18): the field as fetched + what the transaction already
 *     queued + the send's deltas, every sum checked, with what the script
 *     calls inside the transaction may add and, with lanes, what the other
 *     lane's transaction may add before or after it (its positive and
 *     negative sums apart); the transaction's sum of a field
 *     must fit one HINCRBY) refuses the apply send before
 *     anything is queued ("WRONGTYPE|ERR fidelio apply: ...; nothing was
 *     written"; earlier sends of the transaction are discarded with the
 *     connection). Only :p is watched (each watched key costs Redis 7.0 a scan
 *     of the connection's watch list: 3 keys per customer measured 2.3x the
 *     Redis CPU of 1); :d, :c, :l are written by fidelio only together with :p,
 *     so a writer outside fidelio changing their type between a fetch and its
 *     EXEC (milliseconds) is the one case left: the EXEC reply then names the
 *     error ("inside EXEC: the transaction's other writes were made") and
 *     store_apply returns STORE_PERMANENT.
 *   - The aggregates hash is shared by every instance, so not watched (a
 *     WATCH would fence every transaction on every other instance's commit):
 *     HINCRBY adds whatever the others added meanwhile (and the other lane:
 *     the HGETALL, on the first lane, may run before the other lane's last
 *     EXEC; the check's margin, 9e18 against 2^63, is what covers them).
 *   - What C does not decide goes through the script below, queued as EVALSHA
 *     calls inside the same MULTI (its reply comes in EXEC's): a customer
 *     beyond the 512 watched per lane, one of layout <= 3 still indexed by :t, one
 *     whose trim scan of :d is due (tn an eighth of the retention past the
 *     cutoff: at most once per eighth of the retention of event time), one
 *     with an id found at the fetch or twice in its requests (a DUPLICATE,
 *     CONFLICT or repeat: the script tells its outputs and statuses), and a
 *     store_apply without a fetch before it (tools, tests: no WATCH in
 *     force). store_trim is the script alone, as before. A NOSCRIPT inside
 *     EXEC drops the connection (STORE_TRANSIENT: the reconnection loads the
 *     script; what applied is found applied).
 *   - Redis Cluster would need one transaction per hash slot (the aggregates
 *     as one hash per slot), as the script calls would.
 *   - Exactly-once mode changes nothing here: the store's apply is the same;
 *     the Kafka transaction covers the outputs and offsets.
 *
 * THE AGGREGATES A HASHTABLE. Redis keeps a hash as a listpack while it has at
 * most hash-max-listpack-entries fields (512 in Redis 7.0) and no value longer
 * than hash-max-listpack-value (64), and a listpack is searched field by
 * field: an HINCRBY of <prefix>aggregates, a hash of ~400 fields for a month
 * of event time (rules x days), scans it (4.9-7.2 us per call at 412 fields,
 * 0.27-0.31 as a hashtable; redis-benchmark, README Performance, "Redis CPU
 * per event, fifth step"), and each transaction sends one per field it
 * touches (~70). So the store's connection, writable, writes the field
 * "hashtable" (HSETNX: once; a listpack converts at once, for good) whose
 * value, longer than 1,100 bytes, passes any hash-max-listpack-value in use
 * (64 by default, 1024 where recommended for memory); with one above it the hash stays a
 * listpack, as before. Not a layout change: fidelio of any layout ignores a
 * field it does not know in this hash (the report reads its fields by name;
 * store_aggregates leaves this one out), a read-only tool writes nothing. A
 * refusal of the HSETNX (another type, OOM, ACL) is left to the applies.
 *
 * THE SCRIPT (one Lua script, EVALSHA with NOSCRIPT recovery: the applies
 * C does not decide, store_trim). store_apply without a WATCH in force
 * takes the batch's events, a customer's consecutive and in order, and sends
 * one script call per chunk of up to 64 customers (512 events): the calls are
 * pipelined, Lua's call overhead is paid per chunk. Every key of the chunk is
 * declared in KEYS (standalone Redis allows a script to touch many slots;
 * Redis Cluster would need one call per hash slot: chunks grouped by
 * CLUSTER KEYSLOT, and the aggregates as one hash per slot). For each
 * customer of the call, all of its events at once (the transaction's C
 * decides the same, steps 1-5):
 *   1. drop the recorded outputs (:p o<k><id>, po) of events below the
 *      committed offsets the pipeline gave (store_committed); trim: the dedupe records of
 *      touchpoints older than the cutoff min(hw, now) - pipeline.dedupe_retention_ms
 *      (event time; now is the wall clock, so one event dated in the future
 *      cannot push tf ahead of real time and make every later event of the
 *      customer "too old"), except those whose outputs are still kept (not
 *      committed: in po, or a "\x06" record's own offset) and those of this
 *      call, go (at most 1000 per call), and tf
 *      rises to that cutoff. The apply looks for them (HGETALL :d, reading
 *      each record's time) only when the oldest (tn) is more than an eighth
 *      of the retention past the cutoff: a record lives up to 9/8 of the
 *      retention, and a customer's :d is scanned at most once per eighth of
 *      the retention of event time instead of an index being read and
 *      written at every apply (layout 3's :t: ZRANGEBYSCORE + ZADD per
 *      customer). store_trim is exact (every record past the cutoff);
 *   2. each event's id is in :d (a credit's: in :c), or earlier in this call,
 *      with the same content digest          -> DUPLICATE, with its outputs if
 *                                                still kept, else none
 *      with another digest                   -> CONFLICT (a reused id)
 *   3. :p's v differs from the version the
 *      caller computed from                  -> FENCED (another instance wrote since)
 *   4. a touchpoint older than tf            -> TOO_OLD (its dedupe record may be gone)
 *   5. all events new: write :p (v + n, the last event's profile, hw, tn, the
 *      outputs and po), the records in :d (credits: :c), append the
 *      ledger (LTRIM only when RPUSH says it grew past ledger_max), add the
 *      report's deltas.
 * (A customer with more than 128 events or 2048 ledger entries in one batch
 * is applied in consecutive parts, each in its own call, in order: Lua's
 * unpack takes at most ~8000 values. Each part is atomic; a part that does
 * not apply leaves the next ones FENCED, decided again.)
 * A customer is all or nothing: if one of its events is DUPLICATE, CONFLICT
 * or TOO_OLD (or the customer FENCED), nothing of it is written (nor step 1)
 * and its other events come back NOT_APPLIED (FENCED): the pipeline decides
 * them again on the stored state. The other customers of the chunk apply.
 * The report's deltas are summed per customer in C and per call in the
 * script (over the customers that applied): one HINCRBY per field and call
 * (a delta or a sum of 2^52 or more is added pair by pair: Lua's numbers are
 * doubles). The whole call is all or nothing: Redis keeps the writes of a
 * script that fails halfway, so everything that can fail is checked, for
 * every customer of the chunk, before the first write: key types (the reads
 * check theirs; TYPE for :l), that each aggregate
 * field stays an integer, and on Redis >= 7 redis.acl_check_cmd for every
 * write (HSET :p/:d/:c, HDEL :p/:d, ZREM :t of layout 3, RPUSH/LTRIM :l, HINCRBY
 * aggregates).
 * A failure is an error reply "NOPERM|WRONGTYPE|ERR fidelio apply: ...;
 * nothing was written" (store_apply returns STORE_PERMANENT with it); OOM is
 * refused by Redis at the first write, before anything changed: Redis checks
 * OOM only until a script's first write and lets deletes through, so the
 * script writes the profiles (HSET :p) before it drops or trims anything.
 * Commands the script runs: HMGET, HGET, HGETALL, TYPE, HSET, HDEL, RPUSH, LTRIM,
 * HINCRBY, and for a customer of layout 3 until its :t is empty
 * ZRANGEBYSCORE, ZREM; store_fetch: HDEL, WATCH, UNWATCH, HMGET, LLEN, HGETALL, HGET;
 * the transaction: MULTI, HSET, HDEL, RPUSH, LTRIM, HINCRBY, EVALSHA, EXEC (and
 * the connection: INFO, SCRIPT LOAD).
 *
 * THE LEDGER. A layout-5 entry is "\x03" (odd, as "\x01": never an Avro
 * RewardEvent's first byte, a string length's zigzag), a flags byte, then
 * the RewardEvent's fields (schemas/reward_event.avsc) in Avro's encoding
 * less what the key, the entry and the namespace say, and less the reason:
 *   reward_id        string, absent when it is rules_reward_id(source_event_id,
 *                    rule_id, customer) (flag 1: not a credit's, whose id comes
 *                    from the referred customer's event)
 *   customer_id      string, absent when it is the key's customer (flag 2)
 *   kind, rule_id, points, balance_after, source_event_id, occurred_at
 *                    as Avro encodes them (enum index, string, long, long,
 *                    string, long)
 *   program          long n >= 1: the (program_version, program_digest) pair
 *                    numbered n in <prefix>ledger_programs; 0: the two strings
 *                    follow (a program this process could not number: Redis
 *                    failed, or it was first seen with calls in flight)
 * The reason text is not kept: the rewards topic is the durable full record
 * (README, "The ledger in Redis"); the entry keeps what explains the change
 * (rule, kind, points, balance after, source event and its time, program).
 * About 34 bytes for a typical entry (layout 4's: ~103, layout 3's: ~200).
 * store_ledger puts back what the key, the entry and <prefix>ledger_programs
 * say and prints the reason empty (a number missing from <prefix>ledger_programs
 * is an error, never another program). Entries of older layouts print as
 * they were published: a layout-4 entry ("\x01", flags, the Avro record with
 * reward_id and customer_id empty under flags 1 and 2 and, under flag 4, the
 * program digest replaced by its 16-character reference into
 * <prefix>digests), a layout-3 one (the RewardEvent's Avro bytes as they
 * are), a layout-2 one (JSON, "{"). store_apply leaves an entry that is not
 * one RewardEvent as it is (tests). The entry is built in C (a scan of the
 * Avro fields, no decoding) before the apply.
 *
 * OUTPUTS AFTER THE COMMIT. What the retention needs to tell a redelivery
 * from a new event is the id and the digest (in :d); the outputs are kept
 * only until their batch is committed (DESIGN.md invariant 3): an event
 * redelivered before that re-emits them byte for byte. Layout 6 keeps a
 * touchpoint's outside the customer's keys, in <prefix>o:<source> (the
 * apply's HSET, in the same MULTI or script call as the effects), found by
 * the source and offset its dedupe record carries (so a double publish at
 * another offset finds the original's while they are kept). The pipeline
 * calls store_committed after each offset commit (no round trip); the next
 * fetch first HDELs, per source, the fields this process wrote whose block
 * of 256 offsets (offset / 256) is committed whole (store_close does it
 * too), and after the first commit of each source in this process it reads
 * that source's hash once (HGETALL: what an earlier process left, at most its
 * uncommitted batches and its last block) to drop those fields as the commit
 * passes their blocks. So a customer keeps no outputs at rest; a namespace
 * keeps, per partition, at most the outputs of the uncommitted offsets and
 * of the committed part of the last block (< 256 events). Blocks, not
 * offsets: one HDEL per source every 256 offsets rather than per commit,
 * and an event redelivered by a new process (a rebalance, a restart, a new
 * consumer group) shortly after its commit still re-emits its outputs. A redelivery of an event whose offset is
 * committed (the process's table) is still a DUPLICATE (no effect) and
 * re-emits nothing, whether or not the field is gone yet: its outputs were
 * acknowledged by Kafka before its offsets were committed, so subscribers
 * have them (with the same deterministic ids); a record is not trimmed before
 * its offset is committed either. Layout 8 treats a credit read from a
 * partition the same way (its record in :c carries its source and offset;
 * its field is "<offset>/c<customer>" NUL "<credit id>"; an in-process
 * credit goes by its touchpoint's source and offset, committed with it).
 * The outputs of an event with no source (tools, tests) and those a
 * layout-7 apply kept for a credit stay in :p (o<k><id>, listed in
 * po, which the apply reads with the HGETALL of :p it does anyway; po is
 * written only when it changes, removed when empty) and the customer's next
 * apply drops those below the committed offsets, as in layout 5; store_trim
 * drops them (tools, tests). Redis Cluster: <prefix>o:<source> is in another
 * slot than the customer's keys, so the apply's MULTI spans slots: standalone
 * Redis only, as the aggregates hash already requires.
 *
 * THE TRIM is step 1 of the apply (layout 2 ran it as a second script per
 * customer after each commit): a record is never removed before its event's
 * offset is committed (its outputs no longer kept), so a batch redelivered
 * after a crash always finds its records, however much event time it spans
 * (a backfill). tf is raised in the same atomic call as the records go. A
 * customer with no later apply keeps its records past the retention (a
 * redelivery then still finds them: a duplicate rather than TOO_OLD).
 * store_trim runs step 1 alone for given customers, dropping all their
 * outputs (everything applied is declared committed).
 *
 * Past the retention: a touchpoint older than tf is refused (TOO_OLD -> the
 * DLQ, error older_than_dedupe_window) rather than risk applying it twice;
 * above tf no record was ever removed, so a missing record means a new event.
 * Raising the retention later does not bring trimmed records back (tf stays).
 * Consequence: replaying a topic into the namespace that already holds it
 * finds the events within the window (duplicates, re-emitting outputs still
 * kept) and sends older trimmed ones to the DLQ; replay history into a fresh
 * redis.key_prefix instead.
 *
 * CREDITS (a referrer's reward, DESIGN.md invariant 6) carry another
 * customer's event time, so they stay outside the customer's own timeline:
 * never refused for their event time, never moving hw (hence never the trim
 * horizon of the customer's own events). Their dedupe records live in :c and
 * are not trimmed: a duplicate credit can come whenever its source re-emits
 * it (the source's own redelivery or replay, however late in the referrer's
 * time), and the referrer cannot see the source's horizon. Cost: one record
 * of ~12 bytes (layout 8; 17 before) plus the id per credit received, for the
 * life of the profile;
 * its outputs go like a touchpoint's (layout 8: to <prefix>o:<source> by the
 * offset its record carries, dropped after the commit passes its block).
 *
 * LAYOUT 8: A CREDIT'S OUTPUTS BY ITS SOURCE. Layout 7 kept a credit's
 * outputs in the referrer's :p (o<k><id>, listed in po) until the
 * referrer's next apply after the commit, for most referrers days later:
 * ~40 bytes per customer on average (bench/mem.sh), and their :p a
 * hashtable meanwhile (an output is longer than a piece). A layout-8 credit
 * read from a partition is recorded in :c as "\x06" + 8 bytes of digest + 0 +
 * source + offset (the touchpoints' record form, time 0: :c is never
 * trimmed) and its outputs go to <prefix>o:<source> in the same MULTI or
 * script call, dropped by the fetch once the commit passes their block,
 * exactly as a touchpoint's (OUTPUTS AFTER THE COMMIT); a redelivery before
 * that finds them by the record's source and offset. The conflict check
 * compares 8 bytes of digest, as for touchpoints (2^-64 per pair). A credit
 * with no source (tools, tests) is "\x03" + digest, its outputs in :p, as
 * before. LAYOUT 7 namespaces are upgraded in place on the first start of
 * this version (the marker becomes "8"; a layout-7 fidelio then refuses
 * the namespace: it would not look for a layout-8 credit's outputs where
 * they are, nor read a version-4 profile, which this version writes).
 * Nothing is rewritten: a "\x03" credit record deduplicates and conflicts
 * as before, the outputs layout 7 kept in :p are re-emitted for a
 * redelivery and dropped (and :p rebuilt) by the customer's next apply
 * after their commit, as before. Test layout_7_upgraded.
 *
 * LAYOUT 7: THE PROFILE IN PIECES. Redis keeps a hash as a compact listpack
 * (the fields and values one after the other, a few bytes of header each)
 * only while every value is at most hash-max-listpack-value bytes (64 by
 * default) and it has at most hash-max-listpack-entries fields (128); past
 * either it converts the hash, for good, to a hashtable: a dict entry and two
 * strings per field. A profile encoding is ~150-500 bytes (customer id,
 * ladder and rule ids, order records), so layout 6's :p, the profile whole in
 * p, was always a hashtable: ~750 bytes for a customer with 10 events, 350 of
 * them Redis's own. Layout 7 writes the profile in pieces of 64 bytes (p, p1,
 * p2, ...: the first piece in p, so a profile of 64 bytes or less is p alone,
 * as before) and :p stays a listpack with Redis's defaults: ~600 bytes
 * (bench/mem.sh; docs/design.md, "State in Redis"). The fetch and the script
 * read :p with HGETALL (one pass over the listpack, however many pieces; it
 * replaces layout 6's HMGET of six fields) and join the pieces in order; the
 * apply writes them in its HSET of :p and HDELs the pieces a longer profile
 * had past the new one's (the fetch saw them), so no piece is left behind;
 * the transaction's C leaves out of the HSET a piece that is the same bytes
 * as the one fetched (the script writes them all: the same stored bytes).
 * At most STORE_PROFILE_PIECES_MAX (8) pieces, 512 bytes (~90% of the
 * profiles measured): a longer profile is kept whole in p, and that :p is a
 * hashtable as in layout 6. Lookups in a listpack are linear, so an HSET of k
 * pieces into a hash of n fields costs k x n steps, and the customers with
 * long profiles (many orders on record) are those with the most events:
 * without the cap bench/ab.sh measured Redis at +0.9 us per event (HSETs of up
 * to 47 pieces), with it no change within the noise (README, Performance).
 * What still makes a :p a hashtable: a profile past the cap, outputs kept in
 * it until committed (an Avro record, longer than 64 bytes; a po of two
 * credits: a layout-7 credit's, a source-less event's), and a layout-6
 * profile whole in p. Redis never converts a hashtable back,
 * so an apply that leaves a hashtable :p (one that held a value longer than a
 * piece) with nothing longer than a piece (no outputs kept, no po, a profile
 * within the cap) rebuilds
 * it: HSET v (the script's first write, where Redis checks OOM), HDEL of
 * every field it has (v, hw, tf, tn, po, the pieces, the outputs dropped: the
 * key goes with its last field), then the HSET of the apply with tf and tn
 * as they were: Redis creates the new :p as a listpack. The transaction's C
 * and the script write the same (tx_writes_what_the_script_writes). A :p
 * with another field (written outside fidelio) keeps it: the HDEL then leaves
 * the key, and the HSET writes into the hashtable as before (memory only).
 * With hash-max-listpack-value set lower than 64 every :p is a hashtable,
 * as in layout 6; higher changes nothing (pieces stay 64 bytes).
 * LAYOUT 6 namespaces are upgraded in place on the first start of this
 * version (the marker becomes the current one; a layout-6 fidelio then refuses the
 * namespace: it would read the first piece of a profile as the whole, a
 * truncated encoding). Nothing is rewritten: a profile whole in p is a
 * profile in one piece, read as before by the apply, the tools and the scan
 * of profiles; the customer's next apply writes it in pieces and rebuilds its
 * :p as a listpack (above). Test layout_6_upgraded.
 * LAYOUT 5 namespaces are upgraded in place on the first start of this
 * version (the marker becomes the current one; a layout-5 fidelio then refuses the
 * namespace: it would read a "\x05" record as a layout-1 one, the outputs
 * themselves). Nothing is rewritten: a "\x04" record (the whole digest, the
 * time in decimal) deduplicates, conflicts and is trimmed by its time as
 * before, beside the "\x06" records new events get (the scan of :d reads
 * both); the outputs layout 5 kept in :p (o<k><id>, po) are re-emitted for a
 * redelivery and dropped by the customer's next apply after their commit,
 * exactly as before, while new touchpoints' go to <prefix>o:<source>. Why
 * (docs/design.md, "State in Redis"): ~13 bytes fewer per touchpoint record
 * and no outputs at rest; the conflict check compares 8 bytes of digest (a
 * reused id with other content passes as a duplicate with probability
 * 2^-64).
 * LAYOUT 4 namespaces are upgraded in place on the first start of this
 * version or of layouts 5-7 (the marker becomes the current one; a layout-4 fidelio then refuses the
 * namespace: its `fidelio ledger` could not read the new entries). Nothing
 * is rewritten: layout 4's ledger entries print as before (their digests
 * from <prefix>digests) and new entries are appended in the layout-5 form,
 * both in one list. Records, :p and the apply were as in layout 4 (records:
 * layout 6 above).
 * LAYOUT 3 namespaces are upgraded in place on the first start of this
 * version or of layouts 4-7 (the marker becomes the current one; a layout-3 fidelio then refuses the
 * namespace: it would read a "\x04" record as a layout-1 one). Nothing is
 * rewritten: a customer whose :p has no tn is trimmed through its :t as
 * before (its "\x03" records deduplicate as before) while its new records
 * are written in the layout-6 form and not indexed in :t; the trim that
 * empties :t sets tn (from :d) and from then on the customer is layout 4.
 * A customer with no apply after the upgrade keeps its :t.
 * LAYOUT 2 namespaces are upgraded in place on the first start of this
 * version or of layouts 3-7 (the marker becomes the current one). Nothing is rewritten: a layout-2 record ("\x02" + digest +
 * outputs) still deduplicates, conflicts and re-emits its outputs, and is
 * trimmed by event time through :t; layout-2 ledger entries (JSON, which
 * an Avro RewardEvent never starts with: its first byte would be a negative
 * string length) are printed as they are. New records are written in the
 * layout-6 form, new ledger entries in the layout-5 one. Upgrade after a clean stop (SIGTERM: the last
 * batch committed): a layout-2 record carries no source offset, so one left
 * by an uncommitted layout-2 batch counts as committed for the trim (it still
 * deduplicates while younger than the retention).
 * LAYOUT 1 namespaces (records without a digest, credits in :d) are upgraded
 * the same way: one without a tag has no digest to compare and counts as a
 * redelivery, as under layout 1; a credit is looked up in :c, then among
 * layout 1's untagged records in :d (those are still trimmed by event time,
 * as they were under layout 1). */
#ifndef FIDELIO_STORE_H
#define FIDELIO_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "buf.h"
#include "event.h"

/* Room for a key: prefix, braces, customer id, suffix. */
#define EVENT_KEY_MAX (64 + EVENT_ID_MAX + 8)

#define STORE_LAYOUT_VERSION 8
/* Bytes of a content digest (digest.h). */
#define STORE_DIGEST_LEN 16
/* Bytes of it a layout-6 touchpoint dedupe record keeps (a collision among one customer's ids is
 * 2^-64 per pair). */
#define STORE_RECORD_DIGEST_LEN 8
/* Bytes of a piece of the profile in :p (layout 7): Redis's default hash-max-listpack-value, so a
 * customer's :p stays a compact listpack. */
#define STORE_PROFILE_PIECE 64
/* A longer profile is kept whole in p (LAYOUT 7: Redis's listpack lookups are linear, so a
 * customer with a long history would cost more Redis CPU per apply than the bytes it saves). */
#define STORE_PROFILE_PIECES_MAX 8

/* What the namespace's registry says (see <prefix>program and <prefix>stages). */
typedef struct store_registry {
    bool has_program;          /* false before the first `run` that records one */
    char version[EVENT_ID_MAX + 1];  /* program version the namespace last ran */
    char digest[EVENT_ID_MAX + 1];   /* and its content digest */
    buf stages;                /* "ladder:stage" entries, each NUL-terminated; owned */
    size_t nstages;
} store_registry;

typedef struct store store;

/* What a failed call returns (0 is success). A transient failure may go
 * away by itself: the connection was lost, or Redis answered LOADING,
 * TRYAGAIN, BUSY, MASTERDOWN or CLUSTERDOWN; retry later. A permanent one
 * needs someone to act: NOPERM (ACL), NOAUTH/WRONGPASS, OOM (maxmemory),
 * READONLY (a replica), a script error, NOSCRIPT right after SCRIPT LOAD,
 * an unknown error, a wrong layout; retrying cannot help. err names the
 * command and quotes Redis' reply; it never holds a password. */
#define STORE_TRANSIENT (-1)
#define STORE_PERMANENT (-2)

typedef enum store_status {
    STORE_APPLIED,
    STORE_DUPLICATE,
    STORE_FENCED,
    STORE_TOO_OLD,
    STORE_CONFLICT,   /* the id is known with another content digest: not a redelivery */
    STORE_NOT_APPLIED, /* another event of the customer's call was not new (DUPLICATE, CONFLICT,
                        * TOO_OLD): nothing of the customer was written; decide it again */
} store_status;

/* A source of events (a partition of the touchpoints or credits topic) and
 * the first offset of it not yet committed (see store_committed). */
typedef struct store_source {
    char name[16];               /* "t<partition>" or "c<partition>" */
    int64_t next_offset;
} store_source;

/* One customer's stored state, as fetched. */
typedef struct store_profile {
    const char *customer_id;  /* borrowed */
    bool exists;
    int64_t version;          /* 0 when the customer has none yet */
    buf encoding;             /* profile encoding; owned */
} store_profile;

/* One dedupe lookup. */
typedef struct store_seen {
    const char *customer_id;  /* borrowed */
    const char *id;           /* event or credit id; borrowed */
    bool credit;              /* id is a credit id (looked up in :c) */
    const uint8_t *digest;    /* content digest of the event, STORE_DIGEST_LEN bytes; borrowed */
    bool seen;                /* the id is known */
    bool conflict;            /* ... with another digest (recorded stays empty) */
    bool kept;                /* a layout-3/4 record: recorded holds its outputs if still kept */
    buf recorded;             /* recorded outputs when seen; owned */
} store_seen;

/* One event's apply. Inputs are borrowed; results filled by store_apply.
 * The requests of one customer must be consecutive, in the customer's order:
 * store_apply sends them as one apply (see THE APPLY). */
typedef struct store_apply_req {
    const char *customer_id;
    const char *id;               /* dedupe id */
    bool credit;                  /* a credit: deduplicated in :c, outside the customer's timeline */
    const uint8_t *digest;        /* content digest, STORE_DIGEST_LEN bytes, kept with the record */
    int64_t occurred_at;
    int64_t expected_version;     /* the version the new profile was computed from (the
                                   * customer's first request's counts; the others' are not read) */
    const buf *profile;           /* new profile encoding (the customer's last request's is written) */
    const buf *outputs;           /* outputs to record */
    bool source_credits;          /* partition and offset are of the credits topic (else of the
                                   * touchpoints topic: also an in-process credit, by its event's) */
    int32_t partition;            /* where the event was read; -1 none (tools, tests: its outputs
                                   * are kept until store_trim) */
    int64_t offset;               /* and its offset */
    const char *const *ledger;    /* ledger entries: Avro RewardEvents (or any bytes; tests) */
    const size_t *ledger_len;     /* their lengths; NULL: NUL-terminated strings */
    int nledger;
    const char *const *agg;       /* report aggregates: nagg (field, delta) pairs, added when applied */
    int nagg;
    store_status status;          /* result */
    int64_t version;              /* new version (APPLIED) or the current one (FENCED) */
    buf recorded;                 /* recorded outputs (DUPLICATE; empty once its batch was
                                   * committed and the outputs dropped); owned */
} store_apply_req;

/* Connect to url (redis://[[user]:password@]host[:port][/db] or
 * unix://[[user]:password@]/path[?db=N]; with a user, AUTH user password),
 * check the layout version and load the apply script. NULL with err on failure. */
store *store_open(const char *url, const char *prefix, int64_t retention_ms, int64_t ledger_max, char *err,
                  size_t errlen);
/* The same for a tool that only reads (profile, ledger, report, the
 * dashboard): loads no script and writes nothing, not even the layout marker
 * (a namespace without one reads as empty, another layout is an error);
 * works on a read-only replica. store_apply and store_trim refuse it. */
store *store_open_readonly(const char *url, const char *prefix, char *err, size_t errlen);
void store_close(store *s);
/* Drop the connection and make a new one (after an error). 0, or
 * STORE_TRANSIENT / STORE_PERMANENT with err. */
int store_reconnect(store *s, char *err, size_t errlen);

/* Fetch profiles and dedupe records in one pipelined round trip; on a
 * writable store, under WATCH (THE APPLY: the applies that follow are one
 * transaction decided on what it read).
 * Returns 0, or STORE_TRANSIENT / STORE_PERMANENT with err (nothing is half-done). */
int store_fetch(store *s, store_profile *profiles, size_t nprofiles, store_seen *seen, size_t nseen, char *err,
                size_t errlen);
/* Apply the requests (THE APPLY): after a fetch of theirs, plain writes in
 * the transaction of that fetch's WATCH; otherwise one script call per chunk
 * of customers, the calls pipelined. Returns 0 (each req has its status), or
 * STORE_TRANSIENT / STORE_PERMANENT with err (some chunks may have applied:
 * a retry finds their events applied). */
int store_apply(store *s, store_apply_req *reqs, size_t n, char *err, size_t errlen);

/* SPLIT CALLS (the pipeline's overlap of Redis and its own work). A send
 * appends its commands and writes them to the socket without waiting for
 * Redis; its recv reads the replies later. Sends are received in the order
 * they were sent (one connection: Redis runs them in that order, so a fetch
 * sent after an apply reads what the apply wrote, and a version check of an
 * apply sent later still sees every write made in between, this process's
 * or another's). The arrays given to a send must stay in place, untouched,
 * until its recv. store_fetch and store_apply are a send and its recv.
 * A transient failure (the connection lost) drops every send in flight: the
 * recv of each returns STORE_TRANSIENT (store_reconnect forgets them); the
 * caller must treat them as not done (an apply may have run: applying again
 * finds it applied). A fetch that finds redeliveries needs a second round
 * trip for their outputs: with other sends in flight behind it, its recv
 * returns STORE_TRANSIENT (fetch again with nothing in flight). A NOSCRIPT
 * reply (the script cache flushed) with other sends behind drops the
 * connection (STORE_TRANSIENT), as the script must be loaded again first. */
int store_fetch_send(store *s, store_profile *profiles, size_t nprofiles, store_seen *seen, size_t nseen, char *err,
                     size_t errlen);
/* The oldest send in flight, which must be a fetch. */
int store_fetch_recv(store *s, char *err, size_t errlen);
int store_apply_send(store *s, store_apply_req *reqs, size_t n, char *err, size_t errlen);
/* Every apply send in flight up to the next fetch send, oldest first; the
 * first error is returned (a permanent one over a transient one). */
int store_apply_recv(store *s, char *err, size_t errlen);
/* Sends not yet received. */
size_t store_in_flight(const store *s);

/* Tell the store that every event of partition `partition` of the
 * touchpoints topic (credit: of the credits topic) below next_offset is
 * committed (its outputs delivered): the next fetch drops the touchpoints'
 * outputs of the blocks of 256 offsets now committed whole, the next apply
 * of a customer drops the outputs it kept in :p (credits) and may trim the
 * dedupe records (OUTPUTS AFTER THE COMMIT). Call
 * it after each successful offset commit, with the committed offsets (never
 * with offsets still in flight). Costs no round trip; the table lives as long
 * as the store (a restarted process starts empty: outputs of earlier runs are
 * dropped once this one commits past them). */
void store_committed(store *s, bool credit, int32_t partition, int64_t next_offset);

/* Everything applied so far for these customers is committed: drop all their
 * recorded outputs and trim their dedupe records (the apply's trim, alone).
 * For tools and tests; the pipeline uses store_committed. now_ms is the wall
 * clock (epoch ms), the cap of the trim horizon. *trimmed counts the records
 * removed. Returns 0 or STORE_TRANSIENT / STORE_PERMANENT with err. */
int store_trim(store *s, const char *const *customer_ids, size_t n, int64_t now_ms, long long *trimmed, char *err,
               size_t errlen);

/* For tests: the wall clock (epoch ms) store_apply's trim caps the horizon
 * with; 0 (the default) reads the real clock. */
void store_set_now(store *s, int64_t now_ms);
/* For tests: the customers a fetch needs to spread them over the lanes (THE
 * APPLY, lanes; default 256; 0: never). */
void store_set_lane_min(store *s, size_t n);
/* For tests: the lane of a customer in a fetch spread over the lanes. */
int store_lane_of(const char *customer_id);

/* The newest n ledger entries of a customer as JSON lines, oldest first
 * (layouts 3-4: Avro RewardEvents decoded; layout 2's JSON as stored). */
int store_ledger(store *s, const char *customer_id, long n, buf *out, char *err, size_t errlen);

/* Every customer id with a profile (SCAN; for tools and tests). Each id is
 * appended to out followed by '\n'. */
int store_customers(store *s, buf *out, char *err, size_t errlen);

/* Read the namespace's program registry (no write). 0 or -1 with err. */
int store_registry_read(store *s, store_registry *reg, char *err, size_t errlen);
/* Record that this program runs on the namespace: <prefix>program := version,
 * digest; add every "ladder:stage" of stage_refs ('\n'-terminated lines) to
 * <prefix>stages. Only `fidelio run` calls it, at start-up. 0 or -1 with err. */
int store_registry_write(store *s, const char *version, const char *digest, const buf *stage_refs, char *err,
                         size_t errlen);
void store_registry_free(store_registry *reg);

/* Mark the aggregates as no longer complete (pipeline.report_aggregates=0:
 * applies stop counting, so the report must say its figures are partial). */
int store_aggregates_incomplete(store *s, char *err, size_t errlen);

/* Whether Redis answers (reconnecting if needed). 0 or -1 with err. */
int store_ping(store *s, char *err, size_t errlen);

/* The aggregates hash as "field\0value\0" pairs appended to out; *n pairs. */
int store_aggregates(store *s, buf *out, size_t *n, char *err, size_t errlen);
/* Add n (field, delta) pairs to the aggregates hash (one pipelined round
 * trip of HINCRBY), for counts kept outside the apply (the DLQ's). */
int store_aggregates_add(store *s, const char *const *pairs, size_t n, char *err, size_t errlen);
/* Called with each stored profile encoding; non-zero stops the scan. */
typedef int (*store_profile_fn)(void *opaque, const char *data, size_t len);
/* Every profile of the namespace (SCAN, pipelined HGET; reads only), *n
 * counting them. For a namespace whose registry predates its profiles. */
int store_scan_profiles(store *s, store_profile_fn fn, void *opaque, long long *n, char *err, size_t errlen);

/* Count the keys under the namespace's prefix (SCAN MATCH <prefix>*: every
 * key the namespace holds, whatever its layout); with wipe, also UNLINK each
 * batch of them as it goes (`fidelio replay --wipe`; refused on a read-only
 * store). *n: keys found. 0, or a store error code with err. */
int store_namespace_keys(store *s, bool wipe, long long *n, char *err, size_t errlen);
/* <prefix><name>, a plain string key of the namespace's own (a replay's progress):
 * read into out (*found false when absent), or written in one SET. */
int store_meta_get(store *s, const char *name, buf *out, bool *found, char *err, size_t errlen);
/* The SET is one MULTI/EXEC with HINCRBY of the n field/count pairs of
 * <prefix>aggregates (agg_pairs; n may be 0). */
int store_meta_set(store *s, const char *name, const char *value, size_t len, const char *const *agg_pairs, size_t n,
                   char *err, size_t errlen);
void store_profile_free(store_profile *p);
void store_seen_free(store_seen *s);
void store_apply_req_free(store_apply_req *r);

#endif
