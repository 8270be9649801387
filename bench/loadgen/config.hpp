// The load generator's command line: the run's configuration (`config`), --help, the parser, and
// the target predicates that the per-message paths branch on (inline, as they are called for
// every frame).
//
// Thread safety: parse_args() runs once on the main thread before the shards start; the config
// is read-only from then on (the shards read it through `shared_state`).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

namespace bench {

enum class target { bridge, node_bridge, mosquitto_ws, tcp, b1 };

struct config {
    target tgt = target::bridge;
    std::string target_name = "bridge";
    std::string host = "127.0.0.1";
    int port = 0;
    std::string path = "/";
    int subscribers = 0;
    int publishers = 0;
    std::string topic = "bench/t";
    std::string filter;  // default: topic (or topic/+ with per_publisher_topic)
    bool per_publisher_topic = false;
    int qos = 0;
    std::size_t payload = 64;
    double rate = 0;              // total publishes/s; 0 = closed loop (saturation)
    std::uint64_t window = 0;     // closed loop: messages in flight end to end (0 = auto)
    int inflight = 64;            // QoS 1: unacknowledged publishes per publisher
    bool binary_publish = false;  // mqttws binary publish frames instead of JSON
    bool devices = false;         // publishers authenticate with deviceId (the device dialect)
    double duration = 5, warmup = 1, drain = 3, hold = 0, setup_timeout = 30;
    // End of run: how long all of a shard's connections together may take to close cleanly
    // before the rest are reset. 0 = reset at once.
    double close_timeout = 2;
    // Mosquitto listens with a backlog of 100: more SYNs at once overflow it and cost a 1 s
    // retransmission, which would measure the kernel's timer rather than the server.
    int connect_concurrency = 64;
    int src_addrs = 0;  // 0 = auto
    int threads = 1;
    int slow = 0;
    int slow_rcvbuf = 4096;
    std::string slow_filter;  // default: the filter
    // Firehose: one extra connection publishing QoS 0 to a topic that only the slow consumers
    // subscribe to, so that they are owed many MB within seconds while the healthy subscribers
    // keep the normal load. Not counted in published/delivered/losses.
    std::string firehose_topic;
    double firehose_rate = 0;
    std::size_t firehose_payload = 4096;
    std::uint64_t max_outstanding = 2000000;  // open loop: pause above this many deliveries owed
    int max_conns = 20000;
    std::vector<std::pair<std::string, int>> watch;
    std::string label;
    std::string id_prefix;
};

inline bool is_json(const config& c) {
    return c.tgt == target::bridge || c.tgt == target::node_bridge;
}
inline bool is_mqtt(const config& c) {
    return c.tgt == target::mosquitto_ws || c.tgt == target::tcp;
}
inline bool is_ws(const config& c) {
    return c.tgt != target::tcp;
}

// Prints "mqttws-loadgen: MSG" on stderr and exits with status 2.
[[noreturn]] void die(const std::string& msg);
void usage();
config parse_args(int argc, char** argv);

}  // namespace bench
