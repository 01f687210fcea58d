package io.fidelio.peer;

import java.io.IOException;
import java.io.InputStream;
import java.nio.ByteBuffer;
import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.Properties;
import java.util.concurrent.atomic.AtomicLong;

import org.apache.avro.Schema;
import org.apache.avro.generic.GenericData;
import org.apache.avro.generic.GenericDatumReader;
import org.apache.avro.generic.GenericDatumWriter;
import org.apache.avro.generic.GenericRecord;
import org.apache.avro.io.BinaryDecoder;
import org.apache.avro.io.BinaryEncoder;
import org.apache.avro.io.DecoderFactory;
import org.apache.avro.io.EncoderFactory;
import org.apache.kafka.common.serialization.Serdes;
import org.apache.kafka.streams.KafkaStreams;
import org.apache.kafka.streams.StreamsConfig;
import org.apache.kafka.streams.Topology;
import org.apache.kafka.streams.processor.api.Processor;
import org.apache.kafka.streams.processor.api.ProcessorContext;
import org.apache.kafka.streams.processor.api.Record;
import org.apache.kafka.streams.state.KeyValueStore;
import org.apache.kafka.streams.state.Stores;

/**
 * The peer to beat (Fidelio issue 10): Fidelio's program core as the Kafka Streams
 * application an engineer would write instead of adopting Fidelio. It reads the same
 * Avro touchpoints topic (keyed by customer_id), keeps each customer's state in a
 * RocksDB key-value store, and writes Avro RewardEvents and StageChangeEvents
 * (schemas/), with processing.guarantee=exactly_once_v2.
 *
 * <p>The core (bench/kstreams-peer/core-rules.yaml is the same program for Fidelio):
 * welcome 100 once on SIGNUP; APP_USE 10, at most 1 per UTC day of event time; PURCHASE
 * floor(whole currency units x tier multiplier) with the tier held before the event;
 * tiers by lifetime points: bronze x1, silver (1000) x1.25, gold (5000) x1.5, up only.
 *
 * <p>Usage: Peer --bootstrap B --input T --rewards T --stage-changes T --expect N
 * --state-dir DIR [--threads N] [--app-id ID]. It prints, once N input events are
 * processed, "events=N seconds=S rate=R" (first event to the Nth) and exits 0.
 */
public final class Peer {
    static final String STORE = "customers";
    static final String VERSION = "peer-core";
    static final long DAY_MS = 86_400_000L;
    static final long[] TIER_MULT_BP = {10_000, 12_500, 15_000};
    static final long[] TIER_AT = {0, 1_000, 5_000};
    static final String[] TIER_NAME = {"bronze", "silver", "gold"};

    static final AtomicLong processed = new AtomicLong();
    static volatile long firstNanos;

    static Schema schema(String name) throws IOException {
        try (InputStream in = Peer.class.getResourceAsStream("/" + name)) {
            if (in == null)
                throw new IOException("schema " + name + " is not on the classpath");
            return new Schema.Parser().parse(in);
        }
    }

    /** A new record with every field that has a default set to it (fields added
     *  to the contract later, such as program_digest, keep working). */
    static GenericRecord withDefaults(Schema s) {
        GenericRecord r = new GenericData.Record(s);
        for (Schema.Field f : s.getFields())
            if (f.hasDefaultValue())
                r.put(f.pos(), GenericData.get().getDefaultValue(f));
        return r;
    }

    /** One customer's state, as stored in RocksDB (33 bytes). */
    static final class State {
        boolean welcomed;
        long balance, lifetime;
        int tier = -1;          // -1: no tier yet (the first event gives bronze)
        long appDay = Long.MIN_VALUE;
        int appCount;

        static State of(byte[] b) {
            State s = new State();
            if (b == null)
                return s;
            ByteBuffer bb = ByteBuffer.wrap(b);
            s.welcomed = bb.get() != 0;
            s.balance = bb.getLong();
            s.lifetime = bb.getLong();
            s.tier = bb.getInt();
            s.appDay = bb.getLong();
            s.appCount = bb.getInt();
            return s;
        }

        byte[] bytes() {
            return ByteBuffer.allocate(33).put((byte) (welcomed ? 1 : 0)).putLong(balance).putLong(lifetime)
                    .putInt(tier).putLong(appDay).putInt(appCount).array();
        }
    }

    /** The program core over one customer's events, in order. */
    static final class Core implements Processor<String, byte[], String, byte[]> {
        private final Schema touchpoint, reward, stage;
        private final GenericDatumReader<GenericRecord> reader;
        private final GenericDatumWriter<GenericRecord> rewardWriter, stageWriter;
        private ProcessorContext<String, byte[]> ctx;
        private KeyValueStore<String, byte[]> store;
        private BinaryDecoder decoder;
        private BinaryEncoder encoder;
        private final java.io.ByteArrayOutputStream bytesOut = new java.io.ByteArrayOutputStream(256);
        private GenericRecord in;

        Core(Schema touchpoint, Schema reward, Schema stage) {
            this.touchpoint = touchpoint;
            this.reward = reward;
            this.stage = stage;
            this.reader = new GenericDatumReader<>(touchpoint);
            this.rewardWriter = new GenericDatumWriter<>(reward);
            this.stageWriter = new GenericDatumWriter<>(stage);
        }

        @Override
        public void init(ProcessorContext<String, byte[]> context) {
            ctx = context;
            store = context.getStateStore(STORE);
        }

        private byte[] encode(GenericDatumWriter<GenericRecord> w, GenericRecord r) {
            try {
                bytesOut.reset();
                encoder = EncoderFactory.get().directBinaryEncoder(bytesOut, encoder);
                w.write(r, encoder);
                encoder.flush();
                return bytesOut.toByteArray();
            } catch (IOException e) {
                throw new IllegalStateException(e);
            }
        }

        private void earn(String customer, State s, String rule, String reason, long points, String eventId, long at,
                          long ts) {
            s.balance += points;
            s.lifetime += points;
            GenericRecord r = withDefaults(reward);
            r.put("reward_id", eventId + ":" + rule);
            r.put("customer_id", customer);
            r.put("kind", new GenericData.EnumSymbol(reward.getField("kind").schema(), "EARN"));
            r.put("rule_id", rule);
            r.put("points", points);
            r.put("balance_after", s.balance);
            r.put("source_event_id", eventId);
            r.put("occurred_at", at);
            r.put("reason", reason + ": " + points + " points");
            r.put("program_version", VERSION);
            ctx.forward(new Record<>(customer, encode(rewardWriter, r), ts), "rewards");
        }

        @Override
        public void process(Record<String, byte[]> rec) {
            if (firstNanos == 0)
                firstNanos = System.nanoTime();
            try {
                decoder = DecoderFactory.get().binaryDecoder(rec.value(), decoder);
                in = reader.read(in, decoder);
            } catch (IOException | RuntimeException e) {
                processed.incrementAndGet(); // the peer has no DLQ: an undecodable event is skipped
                return;
            }
            String customer = in.get("customer_id").toString();
            String eventId = in.get("event_id").toString();
            String type = in.get("type").toString();
            long at = (Long) in.get("occurred_at");
            State s = State.of(store.get(customer));
            int tierBefore = Math.max(s.tier, 0);
            switch (type) {
            case "SIGNUP":
                if (!s.welcomed) {
                    s.welcomed = true;
                    earn(customer, s, "welcome", "Welcome bonus", 100, eventId, at, rec.timestamp());
                }
                break;
            case "APP_USE": {
                long day = Math.floorDiv(at, DAY_MS);
                if (day > s.appDay) {
                    s.appDay = day;
                    s.appCount = 0;
                }
                if (day == s.appDay && s.appCount < 1) {
                    s.appCount++;
                    earn(customer, s, "app-use", "App visit", 10, eventId, at, rec.timestamp());
                }
                break;
            }
            case "PURCHASE": {
                GenericRecord p = (GenericRecord) in.get("payload");
                long units = (Long) p.get("amount_cents") / 100;
                long points = units * TIER_MULT_BP[tierBefore] / 10_000;
                if (points > 0)
                    earn(customer, s, "purchase", "Purchase", points, eventId, at, rec.timestamp());
                break;
            }
            default:
                break;
            }
            int tier = s.lifetime >= TIER_AT[2] ? 2 : s.lifetime >= TIER_AT[1] ? 1 : 0;
            if (tier > s.tier) {
                GenericRecord c = withDefaults(stage);
                c.put("change_id", eventId + ":tier");
                c.put("customer_id", customer);
                c.put("ladder", "tier");
                c.put("from_stage", s.tier >= 0 ? TIER_NAME[s.tier] : null);
                c.put("to_stage", TIER_NAME[tier]);
                c.put("source_event_id", eventId);
                c.put("occurred_at", at);
                c.put("program_version", VERSION);
                ctx.forward(new Record<>(customer, encode(stageWriter, c), rec.timestamp()), "stages");
                s.tier = tier;
            }
            store.put(customer, s.bytes());
            processed.incrementAndGet();
        }
    }

    public static void main(String[] args) throws Exception {
        String bootstrap = null, input = null, rewards = null, stages = null, stateDir = null;
        String appId = "fidelio-kstreams-peer";
        long expect = 0;
        int threads = 1;
        for (int i = 0; i + 1 < args.length; i += 2) {
            switch (args[i]) {
            case "--bootstrap": bootstrap = args[i + 1]; break;
            case "--input": input = args[i + 1]; break;
            case "--rewards": rewards = args[i + 1]; break;
            case "--stage-changes": stages = args[i + 1]; break;
            case "--state-dir": stateDir = args[i + 1]; break;
            case "--app-id": appId = args[i + 1]; break;
            case "--expect": expect = Long.parseLong(args[i + 1]); break;
            case "--threads": threads = Integer.parseInt(args[i + 1]); break;
            default:
                System.err.println("peer: unknown option " + args[i]);
                System.exit(2);
            }
        }
        if (bootstrap == null || input == null || rewards == null || stages == null || stateDir == null || expect <= 0) {
            System.err.println("usage: Peer --bootstrap B --input T --rewards T --stage-changes T --expect N "
                    + "--state-dir DIR [--threads N] [--app-id ID]");
            System.exit(2);
        }
        Schema tp = schema("touchpoint_event.avsc"), rw = schema("reward_event.avsc"),
                sc = schema("stage_change_event.avsc");

        Topology t = new Topology();
        t.addSource("touchpoints", Serdes.String().deserializer(), Serdes.ByteArray().deserializer(), input);
        t.addProcessor("core", () -> new Core(tp, rw, sc), "touchpoints");
        t.addStateStore(Stores.keyValueStoreBuilder(Stores.persistentKeyValueStore(STORE), Serdes.String(),
                Serdes.ByteArray()), "core");
        t.addSink("rewards", rewards, Serdes.String().serializer(), Serdes.ByteArray().serializer(), "core");
        t.addSink("stages", stages, Serdes.String().serializer(), Serdes.ByteArray().serializer(), "core");

        Properties p = new Properties();
        p.put(StreamsConfig.APPLICATION_ID_CONFIG, appId);
        p.put(StreamsConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        p.put(StreamsConfig.PROCESSING_GUARANTEE_CONFIG, StreamsConfig.EXACTLY_ONCE_V2);
        p.put(StreamsConfig.STATE_DIR_CONFIG, stateDir);
        p.put(StreamsConfig.NUM_STREAM_THREADS_CONFIG, threads);
        p.put(StreamsConfig.consumerPrefix("auto.offset.reset"), "earliest");
        // The changelog and repartition topics are created by Streams itself: one broker here.
        p.put(StreamsConfig.REPLICATION_FACTOR_CONFIG, 1);

        KafkaStreams streams = new KafkaStreams(t, p);
        streams.setUncaughtExceptionHandler(e -> {
            System.err.println("peer: " + e);
            return org.apache.kafka.streams.errors.StreamsUncaughtExceptionHandler.StreamThreadExceptionResponse
                    .SHUTDOWN_CLIENT;
        });
        long start = System.nanoTime();
        streams.start();
        long last = start, progressAt = start, seen = 0;
        while (processed.get() < expect) {
            Thread.sleep(50);
            long now = System.nanoTime(), n = processed.get();
            if (n != seen) {
                seen = n;
                progressAt = now;
            } else if (now - progressAt > 120_000_000_000L) {
                System.err.println("peer: no progress for 120 s after " + n + " of " + expect + " events; giving up");
                streams.close(Duration.ofSeconds(10));
                System.exit(1);
            }
            KafkaStreams.State st = streams.state();
            if (st == KafkaStreams.State.ERROR || st == KafkaStreams.State.NOT_RUNNING
                    || st == KafkaStreams.State.PENDING_SHUTDOWN) {
                System.err.println("peer: streams stopped (" + st + ") after " + processed.get() + " events");
                System.exit(1);
            }
            if (System.nanoTime() - last > 10_000_000_000L) {
                last = System.nanoTime();
                System.err.println("peer: " + processed.get() + " events");
            }
        }
        long end = System.nanoTime();
        double sec = (end - firstNanos) / 1e9;
        streams.close(Duration.ofSeconds(60)); // commits the last transaction
        System.err.printf("peer: %d events in %.3f s after the first (%.2f s to start)%n", processed.get(), sec,
                (firstNanos - start) / 1e9);
        System.out.printf("events=%d seconds=%.3f rate=%.0f%n", processed.get(), sec, processed.get() / sec);
        streams.cleanUp();
    }
}
