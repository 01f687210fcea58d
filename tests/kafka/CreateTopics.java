// CreateTopics - create Kafka topics in one JVM (kafka-topics.sh starts one per
// topic, seconds each on a small machine). Run by broker.sh with Java's
// source launcher on the broker's class path:
//   java -Dfidelio.rf=R CreateTopics.java BOOTSTRAP CLIENT_PROPERTIES NAME[:PARTITIONS[:KEY=VALUE,...]]...
// (topic configs after the partitions, e.g. lat-in:64:message.timestamp.type=LogAppendTime).
// CLIENT_PROPERTIES is read when the file exists (SASL admin credentials).
// Waits until every topic is created; exits 1 with the broker's error otherwise.
import java.io.FileReader;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.concurrent.TimeUnit;
import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.AdminClientConfig;
import org.apache.kafka.clients.admin.NewTopic;

public class CreateTopics {
    public static void main(String[] args) throws Exception {
        if (args.length < 3) {
            System.err.println("usage: CreateTopics BOOTSTRAP CLIENT_PROPERTIES NAME[:PARTITIONS[:KEY=VALUE,...]]...");
            System.exit(2);
        }
        Properties props = new Properties();
        if (Files.exists(Path.of(args[1]))) {
            try (FileReader r = new FileReader(args[1])) { props.load(r); }
        }
        props.put(AdminClientConfig.BOOTSTRAP_SERVERS_CONFIG, args[0]);
        short rf = Short.parseShort(System.getProperty("fidelio.rf", "1"));
        List<NewTopic> topics = new ArrayList<>();
        for (int i = 2; i < args.length; i++) {
            String[] p = args[i].split(":");
            NewTopic t = new NewTopic(p[0], p.length > 1 ? Integer.parseInt(p[1]) : 1, rf);
            if (p.length > 2) {
                Map<String, String> configs = new HashMap<>();
                for (String kv : p[2].split(",")) {
                    String[] e = kv.split("=", 2);
                    if (e.length != 2) {
                        System.err.println("CreateTopics: " + args[i] + ": a topic config is KEY=VALUE");
                        System.exit(2);
                    }
                    configs.put(e[0], e[1]);
                }
                t.configs(configs);
            }
            topics.add(t);
        }
        try (Admin admin = Admin.create(props)) {
            admin.createTopics(topics).all().get(120, TimeUnit.SECONDS);
        } catch (Exception e) {
            Throwable c = e.getCause() != null ? e.getCause() : e;
            System.err.println("CreateTopics: " + c.getClass().getSimpleName() + ": " + c.getMessage());
            System.exit(1);
        }
    }
}
