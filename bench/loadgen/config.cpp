// The command line: --help and parse_args(), which checks every value and derives the defaults
// that depend on others (filter, source addresses, client id prefix).
#include "config.hpp"

#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <asio.hpp>
#include <cstdio>
#include <cstdlib>

#include "../common/bench_common.hpp"

namespace bench {

[[noreturn]] void die(const std::string& msg) {
    std::fprintf(stderr, "mqttws-loadgen: %s\n", msg.c_str());
    std::exit(2);
}

void usage() {
    std::puts(
        "mqttws-loadgen: load generator for the mqttws benchmarks (loopback only)\n"
        "\n"
        "  --target bridge|node-bridge|mosquitto-ws|tcp|b1   system to drive (default bridge)\n"
        "  --host 127.x.x.x --port P [--path /]        where it listens (loopback only)\n"
        "  --subscribers N        connections that subscribe to --filter (default 0)\n"
        "  --publishers M         connections that publish to --topic (default 0)\n"
        "  --topic T              publish topic (default bench/t)\n"
        "  --per-publisher-topic  publisher i publishes to T/i (fan-in); filter defaults to T/+\n"
        "  --filter F             subscription filter (default: the topic)\n"
        "  --qos 0|1              publish and subscription QoS\n"
        "  --payload BYTES        payload size, >= 44 (default 64)\n"
        "  --rate R               total publishes/s, paced; 0 = closed loop saturation (default)\n"
        "  --window W             closed loop: messages in flight end to end (default auto)\n"
        "  --inflight K           QoS 1: unacknowledged publishes per publisher (default 64)\n"
        "  --binary-publish       publish mqttws binary frames, not JSON (--target bridge)\n"
        "  --devices              publishers authenticate with deviceId, not clientId: the\n"
        "                         bridge's device sessions, presence (--target bridge)\n"
        "  --duration S --warmup S --drain S   measurement window, warm-up, drain (5, 1, 3)\n"
        "  --hold S               idle seconds after setup before publishing (memory probes)\n"
        "  --setup-timeout S      give up on connections not set up by then (default 30)\n"
        "  --close-timeout S      at the end: close frame 1000 (MQTT: DISCONNECT first), then\n"
        "                         wait up to S for the server to close; reset the rest\n"
        "                         (default 2; 0 = reset every connection at once)\n"
        "  --connect-concurrency K  setups in progress at once (default 64)\n"
        "  --src-addrs N          bind sockets round-robin to 127.0.0.1..127.0.0.N (default auto)\n"
        "  --threads T            I/O threads (default 1)\n"
        "  --slow K               K extra subscribers that stop reading once subscribed\n"
        "  --slow-rcvbuf BYTES    their SO_RCVBUF (default 4096)\n"
        "  --slow-filter F        what the slow consumers subscribe to (default: --filter)\n"
        "  --firehose-topic T --firehose-rate R --firehose-payload BYTES\n"
        "                         one extra publisher of QoS 0 messages to T at R msg/s (for the\n"
        "                         slow consumers; not counted in the results but its volume)\n"
        "  --watch NAME=PID       sample CPU and RSS of that process (repeatable)\n"
        "  --label TEXT           copied into the output\n"
        "  --max-conns N          refuse to open more connections (default 20000)\n"
        "  --self-test            check the codecs and the histogram, then exit\n"
        "Prints one JSON object on stdout; progress on stderr (\"phase=measure\" when measuring).\n"
        "SIGTERM/SIGINT: stop early, close the connections, print the result, exit 3.");
}

config parse_args(int argc, char** argv) {
    config c;
    auto need = [&](int& i) -> std::string {
        if (i + 1 >= argc) die(std::string("missing value for ") + argv[i]);
        return argv[++i];
    };
    for (int i = 1; i < argc; ++i) {
        const std::string a = argv[i];
        if (a == "--help" || a == "-h") {
            usage();
            std::exit(0);
        } else if (a == "--target") {
            c.target_name = need(i);
            if (c.target_name == "bridge")
                c.tgt = target::bridge;
            else if (c.target_name == "node-bridge")
                c.tgt = target::node_bridge;
            else if (c.target_name == "mosquitto-ws")
                c.tgt = target::mosquitto_ws;
            else if (c.target_name == "tcp")
                c.tgt = target::tcp;
            else if (c.target_name == "b1")
                c.tgt = target::b1;
            else
                die("unknown --target " + c.target_name);
        } else if (a == "--host") {
            c.host = need(i);
        } else if (a == "--port") {
            c.port = std::atoi(need(i).c_str());
        } else if (a == "--path") {
            c.path = need(i);
        } else if (a == "--subscribers") {
            c.subscribers = std::atoi(need(i).c_str());
        } else if (a == "--publishers") {
            c.publishers = std::atoi(need(i).c_str());
        } else if (a == "--topic") {
            c.topic = need(i);
        } else if (a == "--filter") {
            c.filter = need(i);
        } else if (a == "--per-publisher-topic") {
            c.per_publisher_topic = true;
        } else if (a == "--qos") {
            c.qos = std::atoi(need(i).c_str());
        } else if (a == "--payload") {
            c.payload = std::strtoull(need(i).c_str(), nullptr, 10);
        } else if (a == "--rate") {
            c.rate = std::atof(need(i).c_str());
        } else if (a == "--window") {
            c.window = std::strtoull(need(i).c_str(), nullptr, 10);
        } else if (a == "--inflight") {
            c.inflight = std::atoi(need(i).c_str());
        } else if (a == "--binary-publish") {
            c.binary_publish = true;
        } else if (a == "--devices") {
            c.devices = true;
        } else if (a == "--duration") {
            c.duration = std::atof(need(i).c_str());
        } else if (a == "--warmup") {
            c.warmup = std::atof(need(i).c_str());
        } else if (a == "--drain") {
            c.drain = std::atof(need(i).c_str());
        } else if (a == "--hold") {
            c.hold = std::atof(need(i).c_str());
        } else if (a == "--setup-timeout") {
            c.setup_timeout = std::atof(need(i).c_str());
        } else if (a == "--close-timeout") {
            c.close_timeout = std::atof(need(i).c_str());
        } else if (a == "--connect-concurrency") {
            c.connect_concurrency = std::atoi(need(i).c_str());
        } else if (a == "--src-addrs") {
            c.src_addrs = std::atoi(need(i).c_str());
        } else if (a == "--threads") {
            c.threads = std::atoi(need(i).c_str());
        } else if (a == "--slow") {
            c.slow = std::atoi(need(i).c_str());
        } else if (a == "--slow-rcvbuf") {
            c.slow_rcvbuf = std::atoi(need(i).c_str());
        } else if (a == "--slow-filter") {
            c.slow_filter = need(i);
        } else if (a == "--firehose-topic") {
            c.firehose_topic = need(i);
        } else if (a == "--firehose-rate") {
            c.firehose_rate = std::atof(need(i).c_str());
        } else if (a == "--firehose-payload") {
            c.firehose_payload = std::strtoull(need(i).c_str(), nullptr, 10);
        } else if (a == "--max-conns") {
            c.max_conns = std::atoi(need(i).c_str());
        } else if (a == "--watch") {
            const std::string v = need(i);
            const auto eq = v.find('=');
            if (eq == std::string::npos) die("--watch wants NAME=PID");
            c.watch.emplace_back(v.substr(0, eq), std::atoi(v.c_str() + eq + 1));
        } else if (a == "--label") {
            c.label = need(i);
        } else {
            die("unknown option " + a + " (see --help)");
        }
    }
    if (c.port <= 0 || c.port > 65535) die("--port is required");
    asio::error_code ec;
    const auto addr = asio::ip::make_address_v4(c.host, ec);
    if (ec || (addr.to_uint() >> 24) != 127)
        die("--host must be an IPv4 loopback address (127.x.x.x)");
    if (c.qos < 0 || c.qos > 1) die("--qos must be 0 or 1");
    if (c.payload < payload_header_size) die("--payload must be at least 44 bytes");
    if (c.payload > (1u << 20)) die("--payload must be at most 1 MiB");
    if (c.subscribers < 0 || c.publishers < 0 || c.slow < 0) die("negative connection count");
    if (c.tgt == target::b1 && c.publishers > 0) die("--target b1 has no publishers (B1 writes)");
    if (c.binary_publish && c.tgt != target::bridge) die("--binary-publish needs --target bridge");
    if (c.devices && c.tgt != target::bridge) die("--devices needs --target bridge");
    if (c.threads < 1 || c.threads > 16) die("--threads must be 1..16");
    if (c.inflight < 1 || c.inflight > 30000) die("--inflight must be 1..30000");
    if (c.duration <= 0 || c.duration > 3600 || c.warmup < 0 || c.warmup > 600 || c.drain < 0 ||
        c.drain > 600 || c.hold < 0 || c.hold > 3600 || c.setup_timeout <= 0 ||
        c.setup_timeout > 600 || c.close_timeout < 0 || c.close_timeout > 60)
        die("durations out of range (duration 0..3600 s, close timeout 0..60 s, others 0..600 s)");
    if (c.connect_concurrency < 1) c.connect_concurrency = 1;
    const long total =
        static_cast<long>(c.subscribers) + c.publishers + c.slow + (c.firehose_rate > 0 ? 1 : 0);
    rlimit rl{};
    getrlimit(RLIMIT_NOFILE, &rl);
    const long fd_room = static_cast<long>(rl.rlim_cur) - 64;
    if (total > c.max_conns) die("more connections than --max-conns");
    if (total > fd_room)
        die("more connections than the open-file limit allows (ulimit -n " +
            std::to_string(rl.rlim_cur) + ")");
    if (static_cast<long long>(c.subscribers) * std::max(1, c.publishers) > 50000000LL)
        die("subscribers x publishers too large for sequence tracking");
    if (c.src_addrs <= 0) c.src_addrs = static_cast<int>(total / 25000 + 1);
    if (c.src_addrs > 254) die("--src-addrs must be 1..254");
    if (c.filter.empty()) c.filter = c.per_publisher_topic ? c.topic + "/+" : c.topic;
    if (c.slow_filter.empty()) c.slow_filter = c.filter;
    if (c.firehose_rate < 0 || c.firehose_rate > 1e6) die("--firehose-rate must be 0..1e6");
    if (c.firehose_rate > 0 && c.firehose_topic.empty())
        die("--firehose-rate needs --firehose-topic");
    if (c.firehose_rate > 0 && c.tgt == target::b1) die("--target b1 has no publishers");
    if (c.firehose_payload < payload_header_size || c.firehose_payload > (1u << 20))
        die("--firehose-payload must be 44 B .. 1 MiB");
    c.id_prefix = "lg" + std::to_string(getpid()) + "-";
    return c;
}

}  // namespace bench
