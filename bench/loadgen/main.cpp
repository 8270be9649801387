// mqttws-loadgen: drives thousands of WebSocket (or plain MQTT/TCP) connections from one
// process against mqttws, the node baseline bridge, Mosquitto's websockets listener, plain
// Mosquitto, or the B1 floor program, and prints one JSON object with throughput, losses,
// latency percentiles, connection setup rate, its own CPU and the CPU/RSS of watched PIDs.
//
// Design: each I/O thread ("shard") owns an asio::io_context and its connections; nothing in
// a shard is shared except a few atomic counters. Asio runs the loop, the timers and the
// cross-thread posts. The sockets themselves are raw non-blocking fds registered once, edge-
// triggered, in the shard's own epoll set, which Asio waits on as a single descriptor: Asio's
// per-socket async_wait re-arms its registration with an epoll_ctl() on every wait, which
// doubled the system calls per delivery. A readable socket is read with recv() into one large
// per-shard buffer and every frame in it is parsed in place; only an incomplete trailing frame
// is copied into the connection. Writes go straight to the socket with send(); only what the
// kernel did not take is kept until the socket is writable again. The main thread is the
// controller: it runs the phases (setup, warm-up, measurement, drain), samples CPU and RSS at
// the window's edges and prints the result.
//
// At the end every connection is closed the way a real client closes it: a WebSocket close
// frame with status 1000 (after an MQTT DISCONNECT on MQTT targets; plain TCP gets only the
// DISCONNECT), then the shard keeps reading — and discarding — until the server has closed
// the connection, for at most --close-timeout seconds for all of its connections together. A
// clean 1000 close ends the client's session on mqttws; a reset would leave it waiting to be
// resumed. Only what is still open at the deadline is reset (SO_LINGER 0), and counted.
// SIGTERM/SIGINT cut the phases short and go straight to that close (bench/run stops the S4
// background load that way), then the result is printed and the exit status is 3.
//
// Thread safety: a connection is touched only by its shard's thread; cross-thread state is in
// `shared_state` and `shard_counters` (atomics) and read by the controller.
//
// The closed loop with --threads N: the window is one budget for the whole process, while the
// publishers are spread over the shards and the subscribers' deliveries are counted on theirs.
// So a shard must never decide from a snapshot of the other shards' counters how many it may
// send (N shards that read "the window is empty" at the same moment would each fill it: N
// windows in flight); it claims every publish from the shared count `loop_sent` with a
// compare-and-swap against the window. What resolves a delivery — it arrived, or a sequence gap
// shows it was lost — is counted once per (subscriber, publisher) stream (`progress`), so a
// duplicate or a late arrival after a gap frees nothing twice. A stall — no delivery and no
// QoS 1 publish acknowledged for 50 ms, or for twice the latest delivery's end-to-end latency
// if that is longer — is detected by one shard only (`loop_leader`) and writes off what is
// owed by raising a floor, `loop_floor`, to everything sent so far: deliveries that then
// arrive late fill the floor instead of counting on top of it. Every write-off puts another
// window in flight, so it must not fire while the system is merely busy with what it was sent.
// (Before: with 4 shards, up to 4 windows went out at the start; the bridge then took > 50 ms
// to deliver the first message; the additive write-off was counted again when the deliveries
// came after all, so every stall grew the window for good, the bridge fell further behind,
// and S2 at QoS 1 fell from 5.4k to ~30 deliveries/s.)

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <asio.hpp>
#include <atomic>
#include <cerrno>
#include <cinttypes>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <iostream>
#include <map>
#include <memory>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "../common/bench_common.hpp"
#include "proc_stats.hpp"
#include "wire.hpp"

namespace bench {
namespace {

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

bool is_json(const config& c) {
    return c.tgt == target::bridge || c.tgt == target::node_bridge;
}
bool is_mqtt(const config& c) {
    return c.tgt == target::mosquitto_ws || c.tgt == target::tcp;
}
bool is_ws(const config& c) {
    return c.tgt != target::tcp;
}

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

// ---- connection and shard -------------------------------------------------------------------

enum class phase : int { setup, publishing, stopped };

struct shard;

struct conn {
    // closing: our goodbye (close frame / DISCONNECT) is sent; reading on until the server
    // closes the connection.
    enum class st {
        idle,
        connecting,
        upgrading,
        handshaking,
        subscribing,
        ready,
        closing,
        failed,
        closed
    };

    explicit conn(shard& s) : sh(s) {}

    shard& sh;
    int fd = -1;
    st state = st::idle;
    bool is_pub = false;
    bool slow = false;
    bool firehose = false;
    bool read_posted = false;  // a burst continues in a posted handler
    bool writing = false;      // waiting for EPOLLOUT to send the rest of `out`
    bool dirty = false;        // has output to flush at the end of the current batch
    bool close_seen = false;   // closing: the server's close frame has arrived
    std::uint32_t global_id = 0;
    std::uint32_t sub_index = 0;  // row in the shard's sequence table
    std::uint32_t pub_index = 0;  // publisher number embedded in payloads
    std::string carry;            // incomplete frame / packet / HTTP response
    std::string msg;              // fragmented WebSocket message being assembled
    ws::opcode msg_op = ws::text;
    std::string mstream;  // MQTT bytes split across WebSocket frames
    std::string out;
    std::size_t out_off = 0;
    std::string ws_key;
    std::uint64_t t_setup_start = 0;
    std::string pub_topic;
    std::string json_prefix;  // {"type":"publish","topic":"...","qos":Q,
    // publisher state
    std::uint64_t next_seq = 0;
    std::uint32_t inflight = 0;
    std::uint16_t next_packet_id = 1;
    std::vector<std::uint64_t> ring_key;   // QoS 1: msgid / packet id of the slot
    std::vector<std::uint64_t> ring_time;  // QoS 1: send time of the slot
    // slow consumer
    std::uint64_t slow_bytes = 0;
    bool slow_eof = false;
};

struct alignas(64) shard_counters {
    std::atomic<std::uint64_t> delivered{0};  // to healthy subscribers (duplicates included)
    std::atomic<std::uint64_t> sent{0};
    std::atomic<std::uint64_t> acked{0};
    std::atomic<std::uint64_t> gaps{0};  // skipped sequence numbers seen so far
    // Deliveries resolved, each once: how far the (subscriber, publisher) sequences have got
    // (in-order arrivals + skipped numbers; not duplicates or late arrivals). The closed loop's
    // measure of progress.
    std::atomic<std::uint64_t> progress{0};
    std::atomic<std::uint64_t> last_latency{0};  // of the latest delivery, ns
    std::atomic<int> subs_ready{0}, subs_failed{0}, pubs_ready{0}, pubs_failed{0};
    // Subscribers' setup span, read by the controller while the shards run.
    std::atomic<std::uint64_t> first_setup_start{0}, last_sub_setup_done{0};
};

struct shared_state {
    config cfg;
    std::atomic<int> ph{static_cast<int>(phase::setup)};
    std::atomic<bool> measuring{false};
    // Closed loop (see the top of the file). Set before the shards start publishing.
    std::uint64_t fanout = 0;  // healthy subscribers that receive every publish
    std::uint64_t window_deliveries = 0;
    int loop_leader = -1;                       // the one shard that detects stalls
    std::uint64_t stall_ns = 50000000;          // nothing resolved for this long: a stall
    std::atomic<std::uint64_t> loop_sent{0};    // publishes claimed against the window, all shards
    std::atomic<std::uint64_t> loop_floor{0};   // stalls: deliveries counted as resolved anyway
    std::atomic<std::uint64_t> written_off{0};  // deliveries owed when the floor was raised
    std::vector<std::unique_ptr<shard>>* shards = nullptr;
    std::uint64_t total_sent() const;
    std::uint64_t total_delivered() const;
    std::uint64_t loop_progress() const;  // progress of every shard: what arrived or was skipped
    std::uint64_t loop_resolved() const;  // max(loop_floor, loop_progress())
    std::uint64_t loop_activity() const;  // progress + publishes acknowledged (QoS 1)
    std::uint64_t stall_after() const;    // max(stall_ns, 2 x the latest delivery's latency)
};

struct shard {
    shard(shared_state& state, int shard_index)
        : g(state),
          index(shard_index),
          epfd(epoll_create1(EPOLL_CLOEXEC)),
          poller(io),
          timer(io),
          ping_timer(io) {
        if (epfd < 0) die("epoll_create1 failed");
        poller.assign(epfd);
        rbuf.resize(rbuf_cap);
        ms.state ^= static_cast<std::uint32_t>(index * 0x632BE5ABu + getpid());
    }

    shared_state& g;
    int index;
    asio::io_context io{1};
    int epfd;
    asio::posix::stream_descriptor poller;  // the epoll set, as one descriptor for Asio
    std::vector<epoll_event> events = std::vector<epoll_event>(512);
    std::vector<std::unique_ptr<conn>> conns;
    std::vector<conn*> subs, pubs, slows;
    static constexpr std::size_t rbuf_cap = 256 * 1024;
    std::vector<char> rbuf;
    ws::mask_source ms;
    shard_counters c;
    histogram lat, ack_lat, setup_lat;
    std::uint64_t delivered_local = 0, sent_local = 0, acked_local = 0, progress_local = 0,
                  last_latency_local = 0;
    std::uint64_t gaps = 0, late = 0, bad_payload = 0, error_frames = 0, other_frames = 0,
                  publish_errors = 0, closed_unexpectedly = 0, protocol_errors = 0,
                  inflight_blocked = 0, throttled = 0, stalls = 0, ack_unmatched = 0,
                  ring_overwrites = 0;
    std::string first_error;
    std::vector<std::uint64_t> expect;  // [sub_index * publishers + pub] next expected seq
    std::uint32_t seq_cols = 1;
    // setup
    std::vector<conn*> setup_queue;
    std::size_t setup_next = 0;
    int setup_active = 0;
    int setup_limit = 1;
    std::uint64_t first_setup_start = 0;
    // pacing
    asio::steady_timer timer;
    asio::steady_timer ping_timer;
    double shard_rate = 0;
    std::uint64_t pace_start = 0;
    std::uint64_t pace_period_ns = 1000000;
    std::size_t rr = 0;
    std::vector<conn*> dirty;
    std::uint64_t stall_mark_ns = 0, stall_mark_progress = 0;  // loop_leader only
    bool pumping = false;
    std::string payload;   // template, stamped per publish
    conn* fire = nullptr;  // the firehose publisher, if this shard has it
    std::string fire_payload;
    asio::steady_timer fire_timer{io};
    std::uint64_t fire_start = 0, fire_sent = 0, fire_bytes = 0;
    std::vector<sockaddr_in> src;
    sockaddr_in remote{};
    // end of run
    asio::steady_timer close_timer{io};
    int closing_left = 0;
    bool close_armed = false;  // every close started; the last one to finish stops the shard
    bool close_over = false;
    std::uint64_t close_attempted = 0, close_clean = 0, close_fallback = 0, close_errors = 0;
    std::uint64_t close_t0 = 0, close_ns = 0;

    void note_error(const std::string& e) {
        if (first_error.empty()) first_error = e;
    }

    // -- setup --
    void start_setups(const std::vector<conn*>& list);
    void launch_setup(conn* cn);
    void setup_done(conn* cn, bool ok, const char* why);
    void on_connected(conn* cn, int err);
    // -- I/O --
    void wait_events();
    void on_events();
    void close_fd(conn* cn, bool reset);
    void on_readable(conn* cn);
    void process_bytes(conn* cn, char* p, std::size_t n, std::uint64_t now);
    std::size_t parse_ws(conn* cn, char* p, std::size_t n, std::uint64_t now);
    void on_ws_message(conn* cn, ws::opcode op, char* p, std::size_t n, std::uint64_t now);
    void feed_mqtt(conn* cn, const char* p, std::size_t n, std::uint64_t now);
    std::size_t parse_mqtt(conn* cn, const char* p, std::size_t n, std::uint64_t now);
    void on_mqtt_packet(conn* cn, const mqtt::packet& pk, std::uint64_t now);
    void on_json(conn* cn, const char* p, std::size_t n, std::uint64_t now);
    void on_upgrade_response(conn* cn, std::uint64_t now);
    void send_hello(conn* cn);
    void send_subscribe(conn* cn);
    void deliver(conn* cn, const char* p, std::size_t n, std::uint64_t now);
    void on_pub_ack(conn* cn, std::uint64_t key, bool ok, std::uint64_t now);
    void queue_app(conn* cn, std::string_view data, ws::opcode op);
    void mark_dirty(conn* cn);
    void flush_dirty();
    void flush(conn* cn);
    void fail(conn* cn, const char* why);
    // -- publishing --
    void start_publishing();
    void on_tick();
    void pump();
    conn* next_publisher();
    bool publish_one(std::uint64_t now);
    bool claim_window();
    void send_publish(conn* cn, std::uint64_t now);
    void schedule_pings();
    void start_firehose();
    void on_fire_tick();
    // -- end --
    void finish();
    void start_close(conn* cn);
    std::size_t skim_closing(conn* cn, char* p, std::size_t n);
    void close_done(conn* cn);
    void close_deadline();
    void end_close();
    void publish_counters() {
        c.delivered.store(delivered_local, std::memory_order_relaxed);
        c.sent.store(sent_local, std::memory_order_relaxed);
        c.acked.store(acked_local, std::memory_order_relaxed);
        c.gaps.store(gaps, std::memory_order_relaxed);
        c.progress.store(progress_local, std::memory_order_relaxed);
        c.last_latency.store(last_latency_local, std::memory_order_relaxed);
    }
};

std::uint64_t shared_state::total_sent() const {
    std::uint64_t s = 0;
    for (auto& sh : *shards)
        s += sh->c.sent.load(std::memory_order_relaxed);
    return s;
}
std::uint64_t shared_state::loop_progress() const {
    std::uint64_t s = 0;
    for (auto& sh : *shards)
        s += sh->c.progress.load(std::memory_order_relaxed);
    return s;
}
std::uint64_t shared_state::loop_resolved() const {
    return std::max(loop_progress(), loop_floor.load(std::memory_order_relaxed));
}
std::uint64_t shared_state::loop_activity() const {
    std::uint64_t s = 0;
    for (auto& sh : *shards)
        s += sh->c.progress.load(std::memory_order_relaxed) +
             sh->c.acked.load(std::memory_order_relaxed);
    return s;
}
std::uint64_t shared_state::stall_after() const {
    std::uint64_t lat = 0;
    for (auto& sh : *shards)
        lat = std::max(lat, sh->c.last_latency.load(std::memory_order_relaxed));
    return std::max(stall_ns, 2 * lat);
}
std::uint64_t shared_state::total_delivered() const {
    std::uint64_t s = 0;
    for (auto& sh : *shards)
        s += sh->c.delivered.load(std::memory_order_relaxed);
    return s;
}

// ---- setup ------------------------------------------------------------------------------------

void shard::start_setups(const std::vector<conn*>& list) {
    setup_queue = list;
    setup_next = 0;
    while (setup_active < setup_limit && setup_next < setup_queue.size())
        launch_setup(setup_queue[setup_next++]);
}

void shard::launch_setup(conn* cn) {
    ++setup_active;
    cn->t_setup_start = now_ns();
    if (first_setup_start == 0) {
        first_setup_start = cn->t_setup_start;
        c.first_setup_start.store(first_setup_start, std::memory_order_relaxed);
    }
    cn->state = conn::st::connecting;
    cn->fd = ::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (cn->fd < 0) return setup_done(cn, false, "socket() failed");
    int one = 1;
    setsockopt(cn->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (cn->slow) {
        int sz = g.cfg.slow_rcvbuf;
        setsockopt(cn->fd, SOL_SOCKET, SO_RCVBUF, &sz, sizeof sz);
    }
    if (src.size() > 1) {
        // Let connect() pick the port per 4-tuple, so each source address has its own range.
        setsockopt(cn->fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof one);
        const sockaddr_in& a = src[cn->global_id % src.size()];
        if (::bind(cn->fd, reinterpret_cast<const sockaddr*>(&a), sizeof a) != 0)
            return setup_done(cn, false, "bind() to a source address failed");
    }
    // Registered once, edge-triggered: EPOLLOUT reports the connect, later only the moments a
    // full socket buffer has room again.
    epoll_event ev{};
    ev.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET;
    ev.data.ptr = cn;
    if (epoll_ctl(epfd, EPOLL_CTL_ADD, cn->fd, &ev) != 0)
        return setup_done(cn, false, "epoll_ctl failed");
    const int r = ::connect(cn->fd, reinterpret_cast<const sockaddr*>(&remote), sizeof remote);
    if (r == 0) return on_connected(cn, 0);
    if (errno != EINPROGRESS) return setup_done(cn, false, std::strerror(errno));
}

void shard::on_connected(conn* cn, int err) {
    if (err) return setup_done(cn, false, std::strerror(err));
    cn->state = conn::st::handshaking;  // until the upgrade request or CONNECT is queued
    if (is_ws(g.cfg)) {
        unsigned char key[16];
        for (int i = 0; i < 16; i += 4) {
            const std::uint32_t r = ms.next();
            std::memcpy(key + i, &r, 4);
        }
        cn->ws_key = base64(key, 16);
        std::string req =
            "GET " + g.cfg.path + " HTTP/1.1\r\nHost: " + g.cfg.host + ":" +
            std::to_string(g.cfg.port) +
            "\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: " + cn->ws_key +
            "\r\nSec-WebSocket-Version: 13\r\n";
        if (g.cfg.tgt == target::mosquitto_ws) req += "Sec-WebSocket-Protocol: mqtt\r\n";
        req += "\r\n";
        cn->state = conn::st::upgrading;
        cn->out += req;
        flush(cn);
    } else {
        send_hello(cn);
    }
}

void shard::setup_done(conn* cn, bool ok, const char* why) {
    --setup_active;
    const std::uint64_t now = now_ns();
    if (ok) {
        cn->state = conn::st::ready;
        setup_lat.record(now - cn->t_setup_start);
        if (!cn->is_pub) c.last_sub_setup_done.store(now, std::memory_order_relaxed);
        if (cn->is_pub)
            c.pubs_ready.fetch_add(1, std::memory_order_relaxed);
        else
            c.subs_ready.fetch_add(1, std::memory_order_relaxed);
    } else {
        note_error(std::string("setup: ") + why);
        cn->state = conn::st::failed;
        close_fd(cn, true);
        if (cn->is_pub)
            c.pubs_failed.fetch_add(1, std::memory_order_relaxed);
        else
            c.subs_failed.fetch_add(1, std::memory_order_relaxed);
    }
    while (setup_active < setup_limit && setup_next < setup_queue.size())
        launch_setup(setup_queue[setup_next++]);
}

void shard::send_hello(conn* cn) {
    cn->state = conn::st::handshaking;
    const std::string id =
        g.cfg.id_prefix + (cn->is_pub ? "p" : "s") + std::to_string(cn->global_id);
    if (is_json(g.cfg)) {
        queue_app(cn, "{\"type\":\"auth\",\"clientId\":\"" + id + "\",\"msgid\":\"a\"}", ws::text);
    } else {
        queue_app(cn, mqtt::connect_packet(id, 120), ws::binary);
    }
    flush(cn);
}

void shard::send_subscribe(conn* cn) {
    cn->state = conn::st::subscribing;
    if (is_json(g.cfg)) {
        queue_app(cn,
                  "{\"type\":\"subscribe\",\"topic\":\"" +
                      (cn->slow ? g.cfg.slow_filter : g.cfg.filter) +
                      "\",\"qos\":" + std::to_string(g.cfg.qos) + ",\"msgid\":\"s\"}",
                  ws::text);
    } else {
        queue_app(cn,
                  mqtt::subscribe_packet(1, cn->slow ? g.cfg.slow_filter : g.cfg.filter, g.cfg.qos),
                  ws::binary);
    }
    flush(cn);
}

// ---- reading ----------------------------------------------------------------------------------

void shard::wait_events() {
    poller.async_wait(asio::posix::descriptor_base::wait_read, [this](const asio::error_code& ec) {
        if (!ec) on_events();
    });
}

void shard::on_events() {
    const int n = epoll_wait(epfd, events.data(), static_cast<int>(events.size()), 0);
    for (int i = 0; i < n; ++i) {
        conn* cn = static_cast<conn*>(events[static_cast<std::size_t>(i)].data.ptr);
        const std::uint32_t e = events[static_cast<std::size_t>(i)].events;
        if (cn->state == conn::st::closed || cn->state == conn::st::failed) continue;
        if (cn->state == conn::st::connecting) {
            if (!(e & (EPOLLOUT | EPOLLERR | EPOLLHUP))) continue;
            int err = 0;
            socklen_t len = sizeof err;
            getsockopt(cn->fd, SOL_SOCKET, SO_ERROR, &err, &len);
            on_connected(cn, err ? err : ((e & (EPOLLERR | EPOLLHUP)) ? ECONNREFUSED : 0));
            if (cn->state == conn::st::failed) continue;
        } else if ((e & EPOLLOUT) && cn->writing) {
            cn->writing = false;
            flush(cn);
        }
        if ((e & (EPOLLIN | EPOLLRDHUP | EPOLLERR | EPOLLHUP)) && !cn->read_posted) on_readable(cn);
    }
    flush_dirty();
    publish_counters();
    if (!pubs.empty() && g.cfg.rate == 0) pump();
    wait_events();  // Asio re-arms the epoll fd; still-ready sockets make it ready again
}

void shard::close_fd(conn* cn, bool reset) {
    if (cn->fd < 0) return;
    if (reset) {
        linger lg{1, 0};
        setsockopt(cn->fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
    }
    ::close(cn->fd);  // also leaves the epoll set
    cn->fd = -1;
}

void shard::fail(conn* cn, const char* why) {
    if (cn->state == conn::st::closed || cn->state == conn::st::failed) return;
    if (cn->state == conn::st::closing) {  // an error, not the server's orderly close
        ++close_errors;
        note_error(std::string("while closing: ") + why);
        return close_done(cn);
    }
    if (cn->state != conn::st::ready) {
        setup_done(cn, false, why);
        return;
    }
    // Lost before we closed it, in any phase: a server that closes a slow subscriber during the
    // drain (mqttws: 4008) also explains the deliveries it never got.
    ++closed_unexpectedly;
    note_error(std::string("connection lost: ") + why);
    cn->state = conn::st::closed;
    close_fd(cn, false);
}

void shard::on_readable(conn* cn) {
    // A slow consumer stops reading for good once it is subscribed.
    if (cn->slow && cn->state == conn::st::ready) return;
    const std::uint64_t now = now_ns();
    for (int round = 0; round < 16; ++round) {
        char* base = rbuf.data();
        std::size_t have = 0;
        const bool small_carry = cn->carry.size() < rbuf_cap / 2;
        if (small_carry && !cn->carry.empty()) {
            std::memcpy(base, cn->carry.data(), cn->carry.size());
            have = cn->carry.size();
            cn->carry.clear();
        }
        const std::size_t room = rbuf_cap - have;
        const ssize_t r = ::recv(cn->fd, base + have, room, 0);
        if (r == 0) {
            if (have) cn->carry.assign(base, have);
            if (cn->state == conn::st::closing) {  // the server closed after our goodbye
                ++close_clean;
                return close_done(cn);
            }
            return fail(cn, "closed by peer");
        }
        if (r < 0) {
            if (have) cn->carry.assign(base, have);
            if (errno == EINTR) continue;
            if (errno != EAGAIN && errno != EWOULDBLOCK) return fail(cn, std::strerror(errno));
            return;  // drained: the next arrival raises a new edge
        }
        const auto got = static_cast<std::size_t>(r);
        if (small_carry) {
            process_bytes(cn, base, have + got, now);
        } else {
            cn->carry.append(base, got);
            std::string big;
            big.swap(cn->carry);
            process_bytes(cn, big.data(), big.size(), now);
        }
        if (cn->state == conn::st::closed || cn->state == conn::st::failed) return;
        if (cn->slow && cn->state == conn::st::ready) return;
        // Drained, as above; but while closing read on to EAGAIN: a FIN that came with the
        // last bytes raises no edge of its own.
        if (got < room && cn->state != conn::st::closing) return;
    }
    // A long burst: let the other connections have a turn, then read on without an edge.
    cn->read_posted = true;
    asio::post(io, [this, cn] {
        cn->read_posted = false;
        if (cn->state == conn::st::closed || cn->state == conn::st::failed) return;
        on_readable(cn);
        flush_dirty();
        publish_counters();
        if (!pubs.empty() && g.cfg.rate == 0) pump();
    });
}

// Bytes from the socket: HTTP response, WebSocket frames or raw MQTT. Whatever is incomplete
// is saved in cn->carry.
void shard::process_bytes(conn* cn, char* p, std::size_t n, std::uint64_t now) {
    if (cn->state == conn::st::upgrading) {
        cn->carry.append(p, n);
        on_upgrade_response(cn, now);
        return;
    }
    if (cn->state == conn::st::closing) {
        const std::size_t used = is_ws(g.cfg) ? skim_closing(cn, p, n) : n;
        if (cn->state == conn::st::closing && used < n) cn->carry.assign(p + used, n - used);
        return;
    }
    std::size_t used = is_ws(g.cfg) ? parse_ws(cn, p, n, now) : parse_mqtt(cn, p, n, now);
    if (cn->state == conn::st::closed || cn->state == conn::st::failed) return;
    if (used < n) cn->carry.assign(p + used, n - used);
}

void shard::on_upgrade_response(conn* cn, std::uint64_t now) {
    const auto end = cn->carry.find("\r\n\r\n");
    if (end == std::string::npos) {
        if (cn->carry.size() > 16384) fail(cn, "HTTP response too long");
        return;
    }
    std::string head = cn->carry.substr(0, end + 2);
    std::string rest = cn->carry.substr(end + 4);
    cn->carry.clear();
    if (head.compare(0, 12, "HTTP/1.1 101") != 0) return fail(cn, "upgrade refused");
    std::string lower = head;
    for (auto& ch : lower)
        ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
    const auto at = lower.find("\r\nsec-websocket-accept:");
    if (at == std::string::npos) return fail(cn, "no Sec-WebSocket-Accept");
    std::size_t v = at + 23;
    while (v < head.size() && head[v] == ' ')
        ++v;
    const auto eol = head.find("\r\n", v);
    std::string accept = head.substr(v, eol - v);
    while (!accept.empty() && accept.back() == ' ')
        accept.pop_back();
    if (accept != websocket_accept(cn->ws_key)) return fail(cn, "bad Sec-WebSocket-Accept");
    if (g.cfg.tgt == target::b1) {
        setup_done(cn, true, "");
    } else {
        send_hello(cn);
    }
    if (!rest.empty()) process_bytes(cn, rest.data(), rest.size(), now);
}

std::size_t shard::parse_ws(conn* cn, char* p, std::size_t n, std::uint64_t now) {
    std::size_t off = 0;
    while (off < n) {
        ws::frame f;
        const auto r = ws::parse_frame(p + off, n - off, std::size_t{64} << 20, f);
        if (r == ws::parse_result::need_more) break;
        if (r != ws::parse_result::ok) {
            ++protocol_errors;
            fail(cn, "bad WebSocket frame");
            return n;
        }
        off += f.consumed;
        switch (f.op) {
            case ws::ping: {
                queue_app(cn, std::string_view(f.payload, f.length), ws::pong);
                break;
            }
            case ws::pong:
                break;
            case ws::close: {
                const std::string why =
                    "WebSocket close from server (" + std::to_string(ws::close_code(f)) + ")";
                fail(cn, why.c_str());
                return n;
            }
            case ws::text:
            case ws::binary:
                if (is_mqtt(g.cfg)) {
                    feed_mqtt(cn, f.payload, f.length, now);  // a byte stream across frames
                } else if (f.fin) {
                    on_ws_message(cn, f.op, f.payload, f.length, now);
                } else {
                    cn->msg.assign(f.payload, f.length);
                    cn->msg_op = f.op;
                }
                break;
            case ws::continuation:
                if (is_mqtt(g.cfg)) {
                    feed_mqtt(cn, f.payload, f.length, now);
                } else {
                    cn->msg.append(f.payload, f.length);
                    if (f.fin) {
                        std::string m;
                        m.swap(cn->msg);
                        on_ws_message(cn, cn->msg_op, m.data(), m.size(), now);
                    }
                }
                break;
            default:
                ++protocol_errors;
                fail(cn, "unknown WebSocket opcode");
                return n;
        }
        if (cn->state == conn::st::closed || cn->state == conn::st::failed) return n;
    }
    return off;
}

void shard::on_ws_message(conn* cn, ws::opcode, char* p, std::size_t n, std::uint64_t now) {
    if (g.cfg.tgt == target::b1) {
        if (cn->state == conn::st::ready) deliver(cn, p, n, now);
        return;
    }
    on_json(cn, p, n, now);
}

void shard::feed_mqtt(conn* cn, const char* p, std::size_t n, std::uint64_t now) {
    if (cn->mstream.empty()) {
        const std::size_t used = parse_mqtt(cn, p, n, now);
        if (used < n && cn->state != conn::st::closed && cn->state != conn::st::failed)
            cn->mstream.assign(p + used, n - used);
        return;
    }
    cn->mstream.append(p, n);
    std::string s;
    s.swap(cn->mstream);
    const std::size_t used = parse_mqtt(cn, s.data(), s.size(), now);
    if (used < s.size() && cn->state != conn::st::closed && cn->state != conn::st::failed)
        cn->mstream.assign(s.data() + used, s.size() - used);
}

std::size_t shard::parse_mqtt(conn* cn, const char* p, std::size_t n, std::uint64_t now) {
    std::size_t off = 0;
    while (off < n) {
        mqtt::packet pk;
        const auto r = mqtt::parse_packet(p + off, n - off, pk);
        if (r == mqtt::parse_result::need_more) break;
        if (r == mqtt::parse_result::bad) {
            ++protocol_errors;
            fail(cn, "bad MQTT packet");
            return n;
        }
        off += pk.consumed;
        on_mqtt_packet(cn, pk, now);
        if (cn->state == conn::st::closed || cn->state == conn::st::failed) return n;
    }
    return off;
}

void shard::on_mqtt_packet(conn* cn, const mqtt::packet& pk, std::uint64_t now) {
    switch (pk.type) {
        case 3: {  // PUBLISH
            mqtt::publish_view pv;
            if (!mqtt::decode_publish(pk, pv)) {
                ++protocol_errors;
                return;
            }
            if (pv.qos == 1) {
                std::string ack;
                mqtt::append_puback(ack, pv.packet_id);
                queue_app(cn, ack, ws::binary);
            }
            if (cn->state == conn::st::ready && !cn->is_pub)
                deliver(cn, pv.payload, pv.payload_len, now);
            break;
        }
        case 4:  // PUBACK
            if (pk.body_len >= 2) on_pub_ack(cn, mqtt::get_u16(pk.body), true, now);
            break;
        case 2:  // CONNACK
            if (cn->state != conn::st::handshaking) break;
            if (pk.body_len < 2 || pk.body[1] != 0) return fail(cn, "CONNACK refused");
            if (cn->is_pub)
                setup_done(cn, true, "");
            else
                send_subscribe(cn);
            break;
        case 9:  // SUBACK
            if (cn->state != conn::st::subscribing) break;
            if (pk.body_len < 3 || static_cast<unsigned char>(pk.body[2]) == 0x80)
                return fail(cn, "SUBACK refused");
            setup_done(cn, true, "");
            break;
        case 13:  // PINGRESP
            break;
        default:
            ++other_frames;
    }
}

// The value of "type" in a JSON frame, assuming (as mqttws and the node bridge write it) that
// the type string has no escapes.
std::string_view json_type(const char* p, std::size_t n) {
    static constexpr char key[] = "\"type\":\"";
    const void* m = memmem(p, n, key, sizeof key - 1);
    if (!m) return {};
    const char* s = static_cast<const char*>(m) + sizeof key - 1;
    const char* e =
        static_cast<const char*>(std::memchr(s, '"', static_cast<std::size_t>(p + n - s)));
    if (!e) return {};
    return std::string_view(s, static_cast<std::size_t>(e - s));
}

// Parses the integer after "msgid": at or after `from`; returns false when absent or a string.
bool json_msgid(const char* p, std::size_t n, const char* from, std::uint64_t& out) {
    static constexpr char key[] = "\"msgid\":";
    const void* m = memmem(from, static_cast<std::size_t>(p + n - from), key, sizeof key - 1);
    if (!m) return false;
    const char* s = static_cast<const char*>(m) + sizeof key - 1;
    if (s >= p + n || *s < '0' || *s > '9') return false;
    std::uint64_t v = 0;
    while (s < p + n && *s >= '0' && *s <= '9')
        v = v * 10 + static_cast<std::uint64_t>(*s++ - '0');
    out = v;
    return true;
}

void shard::on_json(conn* cn, const char* p, std::size_t n, std::uint64_t now) {
    const std::string_view type = json_type(p, n);
    if (type == "message") {
        if (cn->state != conn::st::ready || cn->is_pub) return;
        deliver(cn, p, n, now);
        if (g.cfg.qos == 1) {
            // mqttws writes the recipient's fields (msgid, seq) before "topic"; the node bridge
            // after the payload. Either way, never look for it inside the payload.
            std::uint64_t id;
            static constexpr char topic_key[] = "\"topic\":";
            static constexpr char payload_key[] = "\"payload\":";
            const void* t = memmem(p, n, topic_key, sizeof topic_key - 1);
            const void* m = memmem(p, n, payload_key, sizeof payload_key - 1);
            const std::size_t head =
                t ? static_cast<std::size_t>(static_cast<const char*>(t) - p) : 0;
            if (json_msgid(p, head, p, id) ||
                json_msgid(p, n, m ? static_cast<const char*>(m) : p, id)) {
                char buf[64];
                const int len =
                    std::snprintf(buf, sizeof buf, "{\"type\":\"ack\",\"msgid\":%" PRIu64 "}", id);
                queue_app(cn, std::string_view(buf, static_cast<std::size_t>(len)), ws::text);
            }
        }
        return;
    }
    if (type == "ack") {
        std::uint64_t id = 0;
        const bool ok = memmem(p, n, "\"status\":\"ok\"", 13) != nullptr;
        if (json_msgid(p, n, p, id)) on_pub_ack(cn, id, ok, now);
        if (!ok) {
            ++publish_errors;
            note_error(std::string("publish refused: ") +
                       std::string(p, std::min<std::size_t>(n, 200)));
        }
        return;
    }
    if (type == "auth_response") {
        if (cn->state != conn::st::handshaking) return;
        if (!memmem(p, n, "\"status\":\"success\"", 18)) return fail(cn, "auth refused");
        if (cn->is_pub)
            setup_done(cn, true, "");
        else
            send_subscribe(cn);
        return;
    }
    if (type == "suback") {
        if (cn->state == conn::st::subscribing) setup_done(cn, true, "");
        return;
    }
    if (type == "error") {
        ++error_frames;
        note_error(std::string("error frame: ") + std::string(p, std::min<std::size_t>(n, 200)));
        if (cn->state != conn::st::ready) fail(cn, "error frame during setup");
        return;
    }
    ++other_frames;  // pong, status, ...
}

void shard::deliver(conn* cn, const char* p, std::size_t n, std::uint64_t now) {
    payload_fields f;
    if (!find_payload(p, n, f)) {
        ++bad_payload;
        return;
    }
    ++delivered_local;
    if (f.send_ns <= now) {
        last_latency_local = now - f.send_ns;
        if (g.measuring.load(std::memory_order_relaxed)) lat.record(last_latency_local);
    }
    if (f.pub >= seq_cols) {
        ++bad_payload;
        return;
    }
    std::uint64_t& exp = expect[static_cast<std::size_t>(cn->sub_index) * seq_cols + f.pub];
    if (exp == ~0ull) {  // B1: streams start before we subscribe; the first seen is the baseline
        exp = f.seq + 1;
    } else if (f.seq == exp) {
        ++exp;
        ++progress_local;
    } else if (f.seq > exp) {
        gaps += f.seq - exp;
        progress_local += f.seq - exp + 1;
        exp = f.seq + 1;
    } else {
        ++late;  // a duplicate, or one already counted as a gap: resolves nothing again
    }
}

void shard::on_pub_ack(conn* cn, std::uint64_t key, bool, std::uint64_t now) {
    if (cn->ring_key.empty()) {
        ++ack_unmatched;
        return;
    }
    const std::size_t slot = key & (cn->ring_key.size() - 1);
    if (cn->ring_key[slot] != key) {
        ++ack_unmatched;
        return;
    }
    cn->ring_key[slot] = ~0ull;
    if (cn->inflight) --cn->inflight;
    ++acked_local;
    if (g.measuring.load(std::memory_order_relaxed)) ack_lat.record(now - cn->ring_time[slot]);
    if (g.cfg.rate == 0 && !pumping) pump();
}

// ---- writing ----------------------------------------------------------------------------------

void shard::queue_app(conn* cn, std::string_view data, ws::opcode op) {
    if (is_ws(g.cfg))
        ws::append_client_frame(cn->out, op, data, ms);
    else
        cn->out.append(data);
    mark_dirty(cn);
}

void shard::mark_dirty(conn* cn) {
    if (!cn->dirty) {
        cn->dirty = true;
        dirty.push_back(cn);
    }
}

void shard::flush_dirty() {
    for (conn* cn : dirty) {
        cn->dirty = false;
        flush(cn);
    }
    dirty.clear();
}

void shard::flush(conn* cn) {
    if (cn->writing || cn->fd < 0) return;
    if (cn->state == conn::st::closed || cn->state == conn::st::failed) {
        cn->out.clear();
        cn->out_off = 0;
        return;
    }
    while (cn->out_off < cn->out.size()) {
        const ssize_t w = ::send(cn->fd, cn->out.data() + cn->out_off, cn->out.size() - cn->out_off,
                                 MSG_NOSIGNAL | MSG_DONTWAIT);
        if (w > 0) {
            cn->out_off += static_cast<std::size_t>(w);
            continue;
        }
        if (w < 0 && errno == EINTR) continue;
        if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            cn->writing = true;  // the EPOLLOUT edge calls flush again
            return;
        }
        fail(cn, "send failed");
        return;
    }
    cn->out.clear();
    cn->out_off = 0;
}

// ---- publishing -------------------------------------------------------------------------------

void shard::send_publish(conn* cn, std::uint64_t now) {
    const std::uint64_t seq = cn->next_seq++;
    stamp_payload(payload.data(), cn->pub_index, seq, now);
    const bool qos1 = g.cfg.qos == 1;
    std::uint64_t key = seq;
    if (g.cfg.binary_publish) {
        // The msgid is 32 bits and must not be 0 with QoS 1: seq + 1 (a run sends far fewer).
        if (qos1) key = seq + 1;
        const std::size_t len =
            mqttws_binary::publish_head_size + cn->pub_topic.size() + payload.size();
        const std::uint32_t k = ws::append_client_header(cn->out, ws::binary, len, ms);
        const std::size_t at = cn->out.size();
        mqttws_binary::append_publish_head(cn->out, cn->pub_topic, g.cfg.qos,
                                           static_cast<std::uint32_t>(qos1 ? key : 0));
        cn->out += payload;
        ws::apply_mask(cn->out.data() + at, len, k);
    } else if (is_json(g.cfg)) {
        char mid[48];
        int mlen = 0;
        if (qos1) mlen = std::snprintf(mid, sizeof mid, "\"msgid\":%" PRIu64 ",", seq);
        const std::size_t len = cn->json_prefix.size() + static_cast<std::size_t>(mlen) + 11 +
                                payload.size() + 2;  // "payload":" ... "}
        const std::uint32_t k = ws::append_client_header(cn->out, ws::text, len, ms);
        const std::size_t at = cn->out.size();
        cn->out += cn->json_prefix;
        cn->out.append(mid, static_cast<std::size_t>(mlen));
        cn->out += "\"payload\":\"";
        cn->out += payload;
        cn->out += "\"}";
        ws::apply_mask(cn->out.data() + at, len, k);
    } else {
        std::uint16_t pid = 0;
        if (qos1) {
            pid = cn->next_packet_id;
            cn->next_packet_id = static_cast<std::uint16_t>(pid == 65535 ? 1 : pid + 1);
            key = pid;
        }
        const std::size_t len =
            mqtt::publish_header_size(cn->pub_topic, g.cfg.qos, payload.size()) + payload.size();
        std::uint32_t k = 0;
        if (is_ws(g.cfg)) k = ws::append_client_header(cn->out, ws::binary, len, ms);
        const std::size_t at = cn->out.size();
        mqtt::append_publish_header(cn->out, cn->pub_topic, g.cfg.qos, pid, payload.size());
        cn->out += payload;
        if (is_ws(g.cfg)) ws::apply_mask(cn->out.data() + at, len, k);
    }
    if (qos1) {
        const std::size_t slot = key & (cn->ring_key.size() - 1);
        if (cn->ring_key[slot] != ~0ull) {
            ++ring_overwrites;  // an older publish was never acknowledged
            if (cn->inflight) --cn->inflight;
        }
        cn->ring_key[slot] = key;
        cn->ring_time[slot] = now;
        ++cn->inflight;
    }
    ++sent_local;
    mark_dirty(cn);
}

// The next publisher (round robin) that may send now, left at pubs[rr]; nullptr if none may.
conn* shard::next_publisher() {
    const std::size_t n = pubs.size();
    for (std::size_t tries = 0; tries < n; ++tries, rr = rr + 1 == n ? 0 : rr + 1) {
        conn* cn = pubs[rr];
        if (cn->state != conn::st::ready) continue;
        if (g.cfg.qos == 1 && cn->inflight >= static_cast<std::uint32_t>(g.cfg.inflight)) {
            ++inflight_blocked;
            continue;
        }
        return cn;
    }
    return nullptr;
}

// Sends one publish from the next publisher that may send; false if none may.
bool shard::publish_one(std::uint64_t now) {
    conn* cn = next_publisher();
    if (!cn) return false;
    rr = rr + 1 == pubs.size() ? 0 : rr + 1;
    send_publish(cn, now);
    return true;
}

// Closed loop: claims one publish from the process-wide window, or says the window is full.
// One publish at a time, by compare-and-swap, so that shards pumping at the same moment cannot
// each take the same room (see the top of the file).
bool shard::claim_window() {
    const std::uint64_t fan = std::max<std::uint64_t>(g.fanout, 1);
    std::uint64_t s = g.loop_sent.load(std::memory_order_relaxed);
    for (;;) {
        const std::uint64_t owed = (s + 1) * fan;  // with this publish
        const std::uint64_t done = g.loop_resolved();
        if (owed > done && owed - done > g.window_deliveries) return false;
        if (g.loop_sent.compare_exchange_weak(s, s + 1, std::memory_order_relaxed)) return true;
    }
}

void shard::start_publishing() {
    if (pubs.empty()) return;
    pace_start = now_ns();
    stall_mark_ns = pace_start;
    if (g.cfg.rate > 0) {
        shard_rate = g.cfg.rate * static_cast<double>(pubs.size()) / g.cfg.publishers;
        pace_period_ns = static_cast<std::uint64_t>(
            std::min(1e6, std::max(20e3, 1e9 / std::max(shard_rate, 1e-3))));
    } else {
        pace_period_ns = 1000000;  // closed loop: a 1 ms tick only catches stalls
        pump();
    }
    timer.expires_after(std::chrono::nanoseconds(pace_period_ns));
    timer.async_wait([this](const asio::error_code& ec) {
        if (!ec) on_tick();
    });
}

void shard::on_tick() {
    if (g.ph.load(std::memory_order_relaxed) != static_cast<int>(phase::publishing)) return;
    const std::uint64_t now = now_ns();
    if (g.cfg.rate > 0) {
        const double due_total = static_cast<double>(now - pace_start) * shard_rate / 1e9;
        std::uint64_t due = static_cast<std::uint64_t>(due_total);
        const std::uint64_t owed = g.total_sent() * g.fanout;
        const std::uint64_t delivered = g.total_delivered();
        const bool over = g.fanout && owed > delivered && owed - delivered > g.cfg.max_outstanding;
        if (over) {
            ++throttled;
            pace_start += pace_period_ns;  // fall behind on purpose instead of bursting later
        } else {
            int budget = 4096;  // bound the burst after a hiccup
            while (sent_local < due && budget-- > 0) {
                if (!publish_one(now)) break;
            }
            if (sent_local < due && budget <= 0)
                pace_start = now - static_cast<std::uint64_t>(static_cast<double>(sent_local) *
                                                              1e9 / shard_rate);
        }
        flush_dirty();
        publish_counters();
    } else {
        // Closed loop: a gap counts as resolved at once; if nothing moved for 50 ms, the last
        // messages in flight were dropped (or are very late): write off what is owed so the
        // loop goes on (a loss shows in the tail count). One shard watches for stalls, and a
        // write-off raises the floor to what was sent rather than adding to the count, so
        // deliveries that come after all are not counted twice (see the top of the file).
        if (index == g.loop_leader) {
            // Stalled: nothing arrived (a late delivery that fills the floor is progress too,
            // or a slow catch-up after a write-off would look like the next stall) and, at
            // QoS 1, no publish was acknowledged, for 50 ms or twice the latest delivery's
            // latency, whichever is longer. A system that is busy with what we sent, or
            // delivers slowly, is not stalled: writing off would put another window in flight
            // and slow it down further (see the top of the file).
            const std::uint64_t p = g.loop_activity();
            if (p != stall_mark_progress) {
                stall_mark_progress = p;
                stall_mark_ns = now;
            } else if (now - stall_mark_ns > g.stall_after()) {
                const std::uint64_t owed = g.loop_sent.load(std::memory_order_relaxed) *
                                           std::max<std::uint64_t>(g.fanout, 1);
                const std::uint64_t d = g.loop_resolved();
                std::uint64_t f = g.loop_floor.load(std::memory_order_relaxed);
                bool raised = false;
                while (f < owed && !(raised = g.loop_floor.compare_exchange_weak(
                                         f, owed, std::memory_order_relaxed))) {
                }
                if (raised && owed > d) {
                    g.written_off.fetch_add(owed - d, std::memory_order_relaxed);
                    ++stalls;
                }
                stall_mark_ns = now;
            }
        }
        pump();
    }
    timer.expires_at(timer.expiry() + std::chrono::nanoseconds(pace_period_ns));
    timer.async_wait([this](const asio::error_code& ec) {
        if (!ec) on_tick();
    });
}

// Closed loop: keep window_deliveries deliveries owed end to end, over all shards together.
void shard::pump() {
    if (pumping || g.ph.load(std::memory_order_relaxed) != static_cast<int>(phase::publishing))
        return;
    pumping = true;
    const std::uint64_t now = now_ns();
    int budget = 4096;
    while (budget-- > 0) {
        // A publisher first (this shard's own, so it stays free), then the room for it.
        conn* cn = next_publisher();
        if (!cn || !claim_window()) break;
        rr = rr + 1 == pubs.size() ? 0 : rr + 1;
        send_publish(cn, now);
    }
    publish_counters();
    flush_dirty();
    pumping = false;
}

// The firehose: QoS 0 publishes of fire_payload at firehose_rate, paced on a 1 ms tick.
void shard::start_firehose() {
    if (!fire || fire->state != conn::st::ready) return;
    fire_start = now_ns();
    fire_timer.expires_after(std::chrono::milliseconds(1));
    fire_timer.async_wait([this](const asio::error_code& ec) {
        if (!ec) on_fire_tick();
    });
}

void shard::on_fire_tick() {
    if (g.ph.load(std::memory_order_relaxed) != static_cast<int>(phase::publishing) ||
        fire->state != conn::st::ready)
        return;
    const std::uint64_t now = now_ns();
    const auto due = static_cast<std::uint64_t>(static_cast<double>(now - fire_start) *
                                                g.cfg.firehose_rate / 1e9);
    // Do not queue without bound in this process if the system does not take it.
    for (int budget = 1024;
         fire_sent < due && budget > 0 && fire->out.size() < (std::size_t{16} << 20); --budget) {
        stamp_payload(fire_payload.data(), 0xFFFFFFFFu, fire_sent, now);
        const std::string& t = g.cfg.firehose_topic;
        if (is_json(g.cfg)) {
            const std::string body = "{\"type\":\"publish\",\"topic\":\"" + t +
                                     "\",\"qos\":0,\"payload\":\"" + fire_payload + "\"}";
            queue_app(fire, body, ws::text);
        } else {
            std::string pkt;
            mqtt::append_publish_header(pkt, t, 0, 0, fire_payload.size());
            pkt += fire_payload;
            queue_app(fire, pkt, ws::binary);
        }
        ++fire_sent;
        fire_bytes += fire_payload.size();
    }
    if (fire_sent < due) fire_start += 1000000;  // behind: fall back rather than burst later
    flush_dirty();
    fire_timer.expires_at(fire_timer.expiry() + std::chrono::milliseconds(1));
    fire_timer.async_wait([this](const asio::error_code& ec) {
        if (!ec) on_fire_tick();
    });
}

void shard::schedule_pings() {
    ping_timer.expires_after(std::chrono::seconds(50));
    ping_timer.async_wait([this](const asio::error_code& ec) {
        if (ec) return;
        for (auto& cn : conns) {
            if (cn->state != conn::st::ready || cn->slow || g.cfg.tgt == target::b1) continue;
            if (is_json(g.cfg))
                queue_app(cn.get(), "{\"type\":\"ping\"}", ws::text);
            else
                queue_app(cn.get(), mqtt::pingreq_packet(), ws::binary);
        }
        flush_dirty();
        schedule_pings();
    });
}

void shard::finish() {
    timer.cancel();
    ping_timer.cancel();
    fire_timer.cancel();
    // Slow consumers: how much was waiting for them, and did the server give up on them?
    for (conn* cn : slows) {
        if (cn->fd < 0 || cn->state == conn::st::failed) continue;
        for (int i = 0; i < 4096; ++i) {
            const ssize_t r = ::recv(cn->fd, rbuf.data(), rbuf_cap, MSG_DONTWAIT);
            if (r > 0) {
                cn->slow_bytes += static_cast<std::uint64_t>(r);
                continue;
            }
            if (r == 0 || (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR))
                cn->slow_eof = true;
            if (r < 0 && errno == EINTR) continue;
            break;
        }
    }
    // Close every connection as a client does (see the top of this file); the server closes
    // the TCP connection first, so no TIME_WAIT is left on this side to use up ports.
    close_t0 = now_ns();
    for (auto& cn : conns)
        start_close(cn.get());
    flush_dirty();
    close_armed = true;
    if (closing_left == 0) return end_close();
    close_timer.expires_after(
        std::chrono::microseconds(static_cast<std::int64_t>(g.cfg.close_timeout * 1e6)));
    close_timer.async_wait([this](const asio::error_code& e) {
        if (!e) close_deadline();
    });
}

void shard::start_close(conn* cn) {
    if (cn->fd < 0 || cn->state == conn::st::closed || cn->state == conn::st::failed) return;
    ++close_attempted;
    const bool open = cn->state == conn::st::handshaking || cn->state == conn::st::subscribing ||
                      cn->state == conn::st::ready;
    if (!open || g.cfg.close_timeout <= 0) {
        // Not yet a WebSocket / MQTT connection (a setup that never finished), or asked to.
        ++close_fallback;
        close_fd(cn, true);
        cn->state = conn::st::closed;
        return;
    }
    if (is_mqtt(g.cfg)) queue_app(cn, mqtt::disconnect_packet(), ws::binary);
    if (is_ws(g.cfg)) {
        ws::append_client_close(cn->out, 1000, "", ms);
        mark_dirty(cn);
    }
    cn->state = conn::st::closing;
    ++closing_left;
    flush(cn);
    // Pick up what is already waiting (a slow consumer's backlog, a read that was cut short):
    // no new edge may come for it.
    if (cn->state == conn::st::closing && !cn->read_posted) on_readable(cn);
}

// Closing: frames are only skimmed for the server's close frame; deliveries no longer count.
std::size_t shard::skim_closing(conn* cn, char* p, std::size_t n) {
    std::size_t off = 0;
    while (off < n) {
        ws::frame f;
        const auto r = ws::parse_frame(p + off, n - off, std::size_t{64} << 20, f);
        if (r == ws::parse_result::need_more) break;
        if (r != ws::parse_result::ok) {
            fail(cn, "bad WebSocket frame");
            return n;
        }
        off += f.consumed;
        if (f.op == ws::close) cn->close_seen = true;  // now wait for the server's TCP close
    }
    return off;
}

void shard::close_done(conn* cn) {
    close_fd(cn, false);
    cn->state = conn::st::closed;
    if (--closing_left == 0 && close_armed) end_close();
}

// The wait is over: what answered with a close frame is closed normally, the rest reset.
void shard::close_deadline() {
    if (close_over) return;
    for (auto& up : conns) {
        conn* cn = up.get();
        if (cn->state != conn::st::closing) continue;
        if (cn->close_seen) {
            ++close_clean;
            close_fd(cn, false);
        } else {
            ++close_fallback;
            close_fd(cn, true);
        }
        cn->state = conn::st::closed;
    }
    closing_left = 0;
    end_close();
}

void shard::end_close() {
    if (close_over) return;
    close_over = true;
    close_ns = now_ns() - close_t0;
    asio::error_code ec;
    close_timer.cancel();
    poller.cancel(ec);
    io.stop();
}

// ---- loopback self-test of the closed loop ----------------------------------------------------
// The codecs above are checked in isolation; this checks the shard machinery end to end. A tiny
// in-process stand-in for mqttws (one thread, poll(), 127.0.0.1, an ephemeral port) speaks the
// JSON subset the load generator uses: auth, subscribe, publish (QoS 1: acked at once) and
// routes every publish to the subscribers as a QoS 1 `message` with its own msgid, keeping at
// most 64 of them unacknowledged per subscriber as mqttws does (so a subscriber whose `ack`s do
// not come back gets nothing more). For the first 300 ms after the first publish it delivers
// nothing, which forces the closed loop to write off (stall) several times. The load generator
// runs as a child process (this binary) with a fan-in like S2, closed loop, QoS 1, and the
// server checks from outside what the loop promises: never more than the window (W) in flight
// end to end — publishes received minus deliveries sent — except one more W per write-off
// while nothing arrives, and within W again once the late deliveries have come, because those
// must not be counted on top of what was written off. It is run with --threads 1 and 4: with
// 4, shards that each filled "the" window (from snapshots of each other's counters) put up to
// 4 W in flight at once. Bounded: ~2 s per run, the child is killed after 30 s.

// An unmasked server frame.
std::string server_frame(ws::opcode op, std::string_view payload) {
    std::string f(1, static_cast<char>(0x80 | op));
    const std::size_t n = payload.size();
    if (n < 126) {
        f += static_cast<char>(n);
    } else if (n <= 0xFFFF) {
        f += static_cast<char>(126);
        f += static_cast<char>(n >> 8);
        f += static_cast<char>(n & 0xFF);
    } else {
        f += static_cast<char>(127);
        for (int s = 56; s >= 0; s -= 8)
            f += static_cast<char>((static_cast<std::uint64_t>(n) >> s) & 0xFF);
    }
    f.append(payload);
    return f;
}

// The string value of "key":"..." in a JSON frame (no escapes: what the load generator writes).
std::string_view json_str(std::string_view frame, std::string_view key) {
    const std::string k = "\"" + std::string(key) + "\":\"";
    const auto at = frame.find(k);
    if (at == std::string_view::npos) return {};
    const auto s = at + k.size();
    const auto e = frame.find('"', s);
    if (e == std::string_view::npos) return {};
    return frame.substr(s, e - s);
}

// A number in the load generator's JSON output: `key` inside the object `section`.
double json_result(const std::string& out, const std::string& section, const std::string& key) {
    const auto sec = out.find("\"" + section + "\":{");
    if (sec == std::string::npos) return NAN;
    const auto at = out.find("\"" + key + "\":", sec);
    if (at == std::string::npos || out.find('}', sec) < at) return NAN;
    return std::atof(out.c_str() + at + key.size() + 3);
}

struct loop_server {
    static constexpr std::size_t sub_window = 64;  // mqttws's --inflight-window default
    std::uint64_t gate_ns = 300000000;             // deliver nothing until then
    std::uint64_t settle_ns = 150000000;           // after the gate: late deliveries arrive
    std::uint64_t watch_end_ns = 1200000000;       // from the first publish; before the drain

    struct peer {
        int fd = -1;
        bool upgraded = false, subscriber = false, closing = false;
        std::string in, out;
        std::deque<std::string> backlog;  // deliveries not yet in the window
        std::set<std::uint64_t> unacked;  // msgids in the window
        std::uint64_t next_msgid = 1, next_seq = 1;
    };

    int lfd = -1;
    int port = 0;
    std::atomic<bool> stop{false};
    std::vector<std::unique_ptr<peer>> peers;
    std::string error;
    // what the server saw
    std::uint64_t t_first = 0;  // first publish
    bool gate_open = false;
    std::uint64_t publishes = 0, deliveries = 0, acks = 0, unknown_acks = 0;
    std::uint64_t publishes_at_gate = 0, max_in_flight_after = 0, in_flight_samples = 0;

    bool listen_loopback() {
        lfd = ::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (lfd < 0) return false;
        int one = 1;
        setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
        sockaddr_in a{};
        a.sin_family = AF_INET;
        a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        socklen_t len = sizeof a;
        if (::bind(lfd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 ||
            ::listen(lfd, 512) != 0 || getsockname(lfd, reinterpret_cast<sockaddr*>(&a), &len) != 0)
            return false;
        port = ntohs(a.sin_port);
        return true;
    }

    void send_to(peer& p, const std::string& frame) {
        p.out += frame;
        flush(p);
    }
    void flush(peer& p) {
        while (!p.out.empty() && p.fd >= 0) {
            const ssize_t w = ::send(p.fd, p.out.data(), p.out.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
            if (w > 0) {
                p.out.erase(0, static_cast<std::size_t>(w));
            } else if (w < 0 && errno == EINTR) {
                continue;
            } else if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
                return;
            } else {
                drop(p);
                return;
            }
        }
        if (p.out.empty() && p.closing) drop(p);  // the close frame is out: close the TCP
    }
    void drop(peer& p) {
        if (p.fd >= 0) ::close(p.fd);
        p.fd = -1;
    }
    // Moves deliveries from the backlog into the window (after the gate).
    void fill(peer& p) {
        if (!gate_open) return;
        while (p.fd >= 0 && !p.backlog.empty() && p.unacked.size() < sub_window) {
            std::string m = std::move(p.backlog.front());
            p.backlog.pop_front();
            const std::uint64_t id = p.next_msgid++;
            p.unacked.insert(id);
            ++deliveries;
            send_to(p,
                    server_frame(ws::text,
                                 "{\"type\":\"message\",\"qos\":1,\"msgid\":" + std::to_string(id) +
                                     ",\"seq\":" + std::to_string(p.next_seq++) + "," + m));
        }
    }
    void on_text(peer& p, std::string_view f) {
        const std::string_view type = json_type(f.data(), f.size());
        std::uint64_t id = 0;
        if (type == "publish") {
            ++publishes;
            if (!t_first) t_first = now_ns();
            if (json_msgid(f.data(), f.size(), f.data(), id))
                send_to(p, server_frame(ws::text, "{\"type\":\"ack\",\"msgid\":" +
                                                      std::to_string(id) + ",\"status\":\"ok\"}"));
            const std::string rest = "\"topic\":\"" + std::string(json_str(f, "topic")) +
                                     "\",\"payload\":\"" + std::string(json_str(f, "payload")) +
                                     "\",\"retain\":false}";
            for (auto& s : peers)
                if (s->subscriber && s->fd >= 0) {
                    s->backlog.push_back(rest);
                    fill(*s);
                }
        } else if (type == "ack") {
            if (json_msgid(f.data(), f.size(), f.data(), id) && p.unacked.erase(id)) {
                ++acks;
                fill(p);
            } else {
                ++unknown_acks;
            }
        } else if (type == "auth") {
            send_to(p, server_frame(ws::text,
                                    "{\"type\":\"auth_response\",\"status\":\"success\","
                                    "\"msgid\":\"a\"}"));
        } else if (type == "subscribe") {
            p.subscriber = true;
            send_to(p, server_frame(ws::text, "{\"type\":\"suback\",\"msgid\":\"s\"}"));
        }
    }
    // Whatever arrived from one peer.
    void on_bytes(peer& p) {
        if (!p.upgraded) {
            const auto end = p.in.find("\r\n\r\n");
            if (end == std::string::npos) return;
            std::string lower = p.in.substr(0, end);
            for (auto& ch : lower)
                ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
            const auto k = lower.find("sec-websocket-key:");
            if (k == std::string::npos) return drop(p);
            std::size_t v = k + 18;
            while (v < end && p.in[v] == ' ')
                ++v;
            const std::string key = p.in.substr(v, lower.find("\r\n", v) - v);
            p.in.erase(0, end + 4);
            p.upgraded = true;
            send_to(p,
                    "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                    "Connection: Upgrade\r\nSec-WebSocket-Accept: " +
                        websocket_accept(key) + "\r\n\r\n");
        }
        std::size_t off = 0;
        while (p.fd >= 0 && off < p.in.size()) {
            ws::frame f;
            const auto r = ws::parse_frame(p.in.data() + off, p.in.size() - off, 1 << 20, f);
            if (r == ws::parse_result::need_more) break;
            if (r != ws::parse_result::ok) {
                error = "loopback server: bad frame from the load generator";
                return drop(p);
            }
            off += f.consumed;
            if (f.op == ws::text) {
                on_text(p, std::string_view(f.payload, f.length));
            } else if (f.op == ws::close) {
                p.closing = true;  // answer, then close the TCP connection (RFC 6455)
                send_to(p, server_frame(ws::close, std::string("\x03\xe8", 2)));
                return;
            } else if (f.op == ws::ping) {
                send_to(p, server_frame(ws::pong, std::string_view(f.payload, f.length)));
            }
        }
        p.in.erase(0, off);
    }
    void sample(std::uint64_t now) {
        if (!t_first) return;
        if (!gate_open && now - t_first >= gate_ns) {
            gate_open = true;
            publishes_at_gate = publishes;
            for (auto& s : peers)
                if (s->subscriber) fill(*s);
        }
        if (gate_open && now - t_first >= gate_ns + settle_ns && now - t_first < watch_end_ns) {
            max_in_flight_after = std::max(max_in_flight_after, publishes - deliveries);
            ++in_flight_samples;
        }
    }
    void run() {
        std::vector<pollfd> fds;
        std::vector<peer*> who;
        while (!stop.load()) {
            fds.clear();
            who.clear();
            fds.push_back(pollfd{lfd, POLLIN, 0});
            who.push_back(nullptr);
            for (auto& p : peers)
                if (p->fd >= 0) {
                    fds.push_back(pollfd{
                        p->fd, static_cast<short>(POLLIN | (p->out.empty() ? 0 : POLLOUT)), 0});
                    who.push_back(p.get());
                }
            if (::poll(fds.data(), fds.size(), 1) < 0 && errno != EINTR) {
                error = "loopback server: poll failed";
                return;
            }
            for (std::size_t i = 0; i < fds.size(); ++i) {
                if (!fds[i].revents) continue;
                if (!who[i]) {
                    for (int fd; (fd = ::accept4(lfd, nullptr, nullptr,
                                                 SOCK_NONBLOCK | SOCK_CLOEXEC)) >= 0;) {
                        int one = 1;
                        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
                        peers.push_back(std::make_unique<peer>());
                        peers.back()->fd = fd;
                    }
                    continue;
                }
                peer& p = *who[i];
                if (p.fd < 0) continue;
                if (fds[i].revents & POLLOUT) flush(p);
                if (p.fd < 0 || !(fds[i].revents & (POLLIN | POLLHUP | POLLERR))) continue;
                char buf[65536];
                for (;;) {
                    const ssize_t r = ::recv(p.fd, buf, sizeof buf, 0);
                    if (r > 0) {
                        p.in.append(buf, static_cast<std::size_t>(r));
                        if (static_cast<std::size_t>(r) < sizeof buf) break;
                        continue;
                    }
                    if (r < 0 && errno == EINTR) continue;
                    if (r == 0 || (errno != EAGAIN && errno != EWOULDBLOCK)) drop(p);
                    break;
                }
                if (p.fd >= 0 && !p.closing) on_bytes(p);
                sample(now_ns());
            }
            sample(now_ns());
        }
        for (auto& p : peers)
            drop(*p);
        ::close(lfd);
    }
};

// Runs this binary as a load generator against `srv` (already listening); its stdout, or ""
// if it failed or had to be killed.
std::string run_child(const std::vector<std::string>& args, int& status) {
    int pfd[2];
    status = -1;
    if (pipe2(pfd, O_CLOEXEC) != 0) return "";
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, pfd[1], 1);
    posix_spawn_file_actions_addopen(&fa, 2, "/dev/null", O_WRONLY, 0);
    std::vector<char*> argv;
    static char self[] = "/proc/self/exe";
    argv.push_back(self);
    for (auto& a : args)
        argv.push_back(const_cast<char*>(a.c_str()));
    argv.push_back(nullptr);
    pid_t pid = -1;
    const int rc = posix_spawn(&pid, self, &fa, nullptr, argv.data(), environ);
    posix_spawn_file_actions_destroy(&fa);
    ::close(pfd[1]);
    if (rc != 0) {
        ::close(pfd[0]);
        return "";
    }
    std::string out;
    const std::uint64_t deadline = now_ns() + 30000000000ull;
    bool killed = false;
    for (;;) {
        pollfd p{pfd[0], POLLIN, 0};
        const std::uint64_t now = now_ns();
        if (now >= deadline) {
            kill(pid, SIGKILL);  // the child we started, by PID
            killed = true;
            break;
        }
        if (::poll(&p, 1,
                   static_cast<int>(
                       std::min<std::uint64_t>(100, (deadline - now) / 1000000 + 1))) <= 0)
            continue;
        char buf[4096];
        const ssize_t r = ::read(pfd[0], buf, sizeof buf);
        if (r > 0) {
            out.append(buf, static_cast<std::size_t>(r));
        } else if (r == 0 || errno != EINTR) {
            break;
        }
    }
    ::close(pfd[0]);
    int st = 0;
    waitpid(pid, &st, 0);
    status = killed ? -1 : (WIFEXITED(st) ? WEXITSTATUS(st) : -1);
    return status == 0 ? out : "";
}

template <class Check>
void loopback_closed_loop(int threads, Check&& check) {
    constexpr std::uint64_t window = 256;  // deliveries (fan-in: one subscriber)
    loop_server srv;
    if (!srv.listen_loopback()) {
        check(false, "loopback: listen on 127.0.0.1");
        return;
    }
    std::thread server([&] { srv.run(); });
    std::vector<std::string> args = {"--port",    std::to_string(srv.port),
                                     "--threads", std::to_string(threads),
                                     "--window",  std::to_string(window)};
    std::istringstream words(
        "--target bridge --subscribers 1 --publishers 200 --per-publisher-topic --topic "
        "selftest/in --qos 1 --inflight 8 --warmup 0.3 --duration 1 --drain 1 --close-timeout 1 "
        "--setup-timeout 10 --label self-test");
    for (std::string w; words >> w;)
        args.push_back(w);
    int status = 0;
    const std::string out = run_child(args, status);
    srv.stop = true;
    server.join();
    const std::string t = " (--threads " + std::to_string(threads) + ")";
    auto say = [&](bool ok, const std::string& what) { check(ok, what.c_str()); };
    say(!out.empty() && srv.error.empty(), "loopback: the load generator ran" + t);
    if (out.empty()) return;
    const double published = json_result(out, "published", "total");
    const double delivered = json_result(out, "delivered", "total");
    const double stalls = json_result(out, "published", "closed_loop_stalls");
    const double written_off = json_result(out, "published", "closed_loop_written_off");
    std::fprintf(stderr,
                 "loopback%s: published %.0f, delivered %.0f, stalls %.0f, written off %.0f; "
                 "server: publishes %" PRIu64 " (%" PRIu64
                 " by the end of the gate), "
                 "deliveries %" PRIu64 ", acks %" PRIu64 ", unknown acks %" PRIu64
                 ", max in flight after the gate %" PRIu64 " (window %" PRIu64 ")\n",
                 t.c_str(), published, delivered, stalls, written_off, srv.publishes,
                 srv.publishes_at_gate, srv.deliveries, srv.acks, srv.unknown_acks,
                 srv.max_in_flight_after, window);
    say(srv.publishes > 2 * window && published == static_cast<double>(srv.publishes),
        "loopback: every publish reached the server" + t);
    say(delivered == published && json_result(out, "delivered", "lost") == 0 &&
            json_result(out, "delivered", "dup_or_late") == 0,
        "loopback: every publish delivered once, nothing lost" + t);
    say(srv.unknown_acks == 0 && srv.acks == srv.deliveries && srv.deliveries == srv.publishes,
        "loopback: the subscriber acked every QoS 1 delivery, and only those" + t);
    say(stalls >= 1 && written_off >= 1, "loopback: the gate made the closed loop write off" + t);
    // While nothing is delivered: one window, and one more per write-off.
    say(static_cast<double>(srv.publishes_at_gate) <= (1 + stalls) * static_cast<double>(window),
        "loopback: in flight before any delivery <= window x (1 + write-offs)" + t);
    // Once the late deliveries are in: the window again (2 W leaves room for one more stall).
    say(srv.in_flight_samples > 0 && srv.max_in_flight_after <= 2 * window,
        "loopback: in flight after the written-off deliveries arrived <= 2 x window" + t);
}

// ---- self-test --------------------------------------------------------------------------------

int self_test() {
    int failures = 0, passed = 0;
    auto check = [&](bool ok, const char* what) {
        if (ok) {
            ++passed;
        } else {
            ++failures;
            std::fprintf(stderr, "FAIL: %s\n", what);
        }
    };
    check(websocket_accept("dGhlIHNhbXBsZSBub25jZQ==") == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=",
          "RFC 6455 accept example");
    // masked client frame round trip, three length encodings
    ws::mask_source ms;
    for (std::size_t len : {5u, 300u, 70000u}) {
        std::string payload(len, 'a');
        for (std::size_t i = 0; i < len; ++i)
            payload[i] = static_cast<char>('a' + i % 26);
        std::string out;
        ws::append_client_frame(out, ws::text, payload, ms);
        ws::frame f;
        const auto r = ws::parse_frame(out.data(), out.size(), 1 << 20, f);
        check(r == ws::parse_result::ok && f.fin && f.op == ws::text &&
                  std::string(f.payload, f.length) == payload && f.consumed == out.size(),
              "masked frame round trip");
        check(
            ws::parse_frame(out.data(), out.size() - 1, 1 << 20, f) == ws::parse_result::need_more,
            "partial frame needs more");
    }
    // unmasked server frame with 64-bit length
    {
        std::string fr;
        fr += static_cast<char>(0x02);  // binary, not final
        fr += static_cast<char>(127);
        for (int i = 0; i < 7; ++i)
            fr += '\0';
        fr += static_cast<char>(3);
        fr += "xyz";
        ws::frame f;
        check(ws::parse_frame(fr.data(), fr.size(), 100, f) == ws::parse_result::ok && !f.fin &&
                  f.op == ws::binary && f.length == 3,
              "64-bit length, not final");
    }
    // the client's goodbye: a masked close frame with status 1000, and what a server answers
    {
        std::string out;
        ws::append_client_close(out, 1000, "", ms);
        ws::frame f;
        check(out.size() == 8 && static_cast<unsigned char>(out[0]) == 0x88 &&
                  (static_cast<unsigned char>(out[1]) & 0x80) && (out[1] & 0x7F) == 2,
              "client close frame: final, opcode 8, masked, 2-byte body");
        check(ws::parse_frame(out.data(), out.size(), 125, f) == ws::parse_result::ok && f.fin &&
                  f.op == ws::close && ws::close_code(f) == 1000 && f.consumed == out.size(),
              "client close frame round trip, status 1000");
        std::string two;
        ws::append_client_frame(two, ws::text, "{\"type\":\"ping\"}", ms);
        const std::size_t first = two.size();
        ws::append_client_close(two, 1001, "going away", ms);
        check(ws::parse_frame(two.data(), two.size(), 125, f) == ws::parse_result::ok &&
                  f.consumed == first &&
                  ws::parse_frame(two.data() + first, two.size() - first, 125, f) ==
                      ws::parse_result::ok &&
                  ws::close_code(f) == 1001 &&
                  std::string(f.payload + 2, f.length - 2) == "going away",
              "close frame after a data frame, with a reason");
        std::string reply("\x88\x02\x03\xe8", 4);  // unmasked server close, 1000
        check(ws::parse_frame(reply.data(), reply.size(), 125, f) == ws::parse_result::ok &&
                  ws::close_code(f) == 1000,
              "server close frame, status 1000");
        std::string bare("\x88\x00", 2);
        check(ws::parse_frame(bare.data(), bare.size(), 125, f) == ws::parse_result::ok &&
                  ws::close_code(f) == 1005,
              "close frame without a status is 1005");
        std::string text("\x81\x02hi", 4);
        check(ws::parse_frame(text.data(), text.size(), 125, f) == ws::parse_result::ok &&
                  ws::close_code(f) == 1005,
              "close_code of a non-close frame");
        const std::string d = mqtt::disconnect_packet();
        mqtt::packet pk;
        check(mqtt::parse_packet(d.data(), d.size(), pk) == mqtt::parse_result::ok &&
                  pk.type == 14 && pk.flags == 0 && pk.body_len == 0 && pk.consumed == 2,
              "MQTT DISCONNECT");
    }
    // mqttws binary publish: the example of docs/protocol.md, "Binary frames"
    {
        std::string frame;
        mqttws_binary::append_publish_head(frame, "a/b", 1, 77);
        check(frame.size() == mqttws_binary::publish_head_size + 3, "binary publish head size");
        frame += std::string("\x00\xff", 2);
        const std::string documented =  // 01 01 00 00 00 4d 00 03 61 2f 62 00 ff
            std::string("\x01\x01\x00\x00\x00\x4d\x00\x03", 8) + "a/b" + std::string("\x00\xff", 2);
        check(frame == documented, "binary publish frame as documented");
    }
    // MQTT publish round trip
    {
        std::string pl = make_payload(64);
        stamp_payload(pl.data(), 7, 123456789, 987654321);
        std::string pkt;
        mqtt::append_publish_header(pkt, "a/b", 1, 42, pl.size());
        check(pkt.size() == mqtt::publish_header_size("a/b", 1, pl.size()), "publish header size");
        pkt += pl;
        mqtt::packet pk;
        mqtt::publish_view pv;
        check(mqtt::parse_packet(pkt.data(), pkt.size(), pk) == mqtt::parse_result::ok &&
                  pk.type == 3 && mqtt::decode_publish(pk, pv) && pv.qos == 1 &&
                  pv.packet_id == 42 && pv.topic == "a/b" && pv.payload_len == 64,
              "publish round trip");
        payload_fields f;
        check(find_payload(pv.payload, pv.payload_len, f) && f.pub == 7 && f.seq == 123456789 &&
                  f.send_ns == 987654321,
              "payload fields");
        std::string big;
        mqtt::append_publish_header(big, "t", 0, 0, 20000);
        big += std::string(20000, 'z');
        check(mqtt::parse_packet(big.data(), big.size(), pk) == mqtt::parse_result::ok &&
                  pk.body_len == 20003,
              "multi-byte remaining length");
    }
    // histogram
    {
        histogram h;
        for (std::uint64_t v = 1; v <= 100000; ++v)
            h.record(v * 1000);
        const double p50 = static_cast<double>(h.percentile(0.5));
        const double p99 = static_cast<double>(h.percentile(0.99));
        check(std::fabs(p50 - 50e6) / 50e6 < 0.02, "histogram p50 within 2%");
        check(std::fabs(p99 - 99e6) / 99e6 < 0.02, "histogram p99 within 2%");
        check(h.max() == 100000000 && h.count() == 100000, "histogram max/count");
        bool mono = true;
        for (std::size_t i = 1; i < histogram::bucket_count; ++i)
            mono = mono && histogram::value_of(i) > histogram::value_of(i - 1) &&
                   histogram::index_of(histogram::value_of(i)) == i;
        check(mono, "histogram buckets monotonic and invertible");
    }
    // The shard machinery against an in-process server, with one and with several I/O threads.
    for (int threads : {1, 4})
        loopback_closed_loop(threads, check);
    std::printf("%d passed, %d failed\n", passed, failures);
    return failures ? 1 : 0;
}

// ---- output -----------------------------------------------------------------------------------

struct json_out {
    std::ostringstream o;
    bool first = true;
    void key(const char* k) {
        if (!first) o << ',';
        first = false;
        o << '"' << k << "\":";
    }
    void open(const char* k) {
        key(k);
        o << '{';
        first = true;
    }
    void close() {
        o << '}';
        first = false;
    }
    void num(const char* k, double v) {
        key(k);
        if (!std::isfinite(v)) {
            o << "null";
            return;
        }
        char buf[64];
        if (v == std::floor(v) && std::fabs(v) < 9e15)
            std::snprintf(buf, sizeof buf, "%.0f", v);
        else
            std::snprintf(buf, sizeof buf, "%.4g", v);
        o << buf;
    }
    void str(const char* k, const std::string& v) {
        key(k);
        o << '"';
        for (char ch : v) {
            if (ch == '"' || ch == '\\')
                o << '\\' << ch;
            else if (static_cast<unsigned char>(ch) < 0x20)
                o << ' ';
            else
                o << ch;
        }
        o << '"';
    }
    void boolean(const char* k, bool v) {
        key(k);
        o << (v ? "true" : "false");
    }
    void hist_us(const char* k, const histogram& h) {
        open(k);
        num("count", static_cast<double>(h.count()));
        auto us = [](std::uint64_t ns) {
            return std::round(static_cast<double>(ns) / 100.0) / 10.0;
        };
        num("p50", us(h.percentile(0.50)));
        num("p90", us(h.percentile(0.90)));
        num("p99", us(h.percentile(0.99)));
        num("p999", us(h.percentile(0.999)));
        num("max", us(h.max()));
        num("mean", std::round(h.mean() / 100.0) / 10.0);
        close();
    }
};

void sleep_s(double s) {
    std::this_thread::sleep_for(std::chrono::microseconds(static_cast<std::int64_t>(s * 1e6)));
}

// SIGTERM / SIGINT: the controller stops waiting and goes on to the close and the result.
std::atomic<bool> interrupted{false};
static_assert(std::atomic<bool>::is_always_lock_free, "set from a signal handler");
extern "C" void on_stop_signal(int) {
    interrupted.store(true, std::memory_order_relaxed);
}
bool stopping() {
    return interrupted.load(std::memory_order_relaxed);
}

// A phase's wait: sleeps s seconds in short steps, less if a stop signal comes.
void pause_s(double s) {
    const std::uint64_t end = now_ns() + static_cast<std::uint64_t>(std::max(0.0, s) * 1e9);
    for (std::uint64_t t = now_ns(); t < end && !stopping(); t = now_ns())
        sleep_s(std::min(0.01, static_cast<double>(end - t) / 1e9));
}

struct watched {
    std::string name;
    int pid;
    proc_sample start, setup, m0, m1;
    std::uint64_t rss_max = 0;
};

}  // namespace
}  // namespace bench

int main(int argc, char** argv) {
    using namespace bench;
    for (int i = 1; i < argc; ++i)
        if (std::string(argv[i]) == "--self-test") return self_test();
    signal(SIGPIPE, SIG_IGN);
    {
        struct sigaction sa {};
        sa.sa_handler = on_stop_signal;
        sigemptyset(&sa.sa_mask);
        sigaction(SIGTERM, &sa, nullptr);
        sigaction(SIGINT, &sa, nullptr);
    }
    shared_state g;
    g.cfg = parse_args(argc, argv);
    const config& cfg = g.cfg;

    std::vector<watched> watch;
    for (auto& [name, pid] : cfg.watch)
        watch.push_back(watched{name, pid, {}, {}, {}, {}, 0});
    auto sample_all = [&](proc_sample watched::*which) {
        for (auto& w : watch) {
            w.*which = sample_pid(w.pid);
            w.rss_max = std::max(w.rss_max, (w.*which).rss_kb);
        }
    };
    sample_all(&watched::start);
    const proc_sample self_start = sample_self();

    // Build the shards and their connections.
    std::vector<std::unique_ptr<shard>> shards;
    g.shards = &shards;
    for (int t = 0; t < cfg.threads; ++t) {
        shards.push_back(std::make_unique<shard>(g, t));
        auto& sh = *shards.back();
        sh.remote.sin_family = AF_INET;
        sh.remote.sin_port = htons(static_cast<std::uint16_t>(cfg.port));
        sh.remote.sin_addr.s_addr = htonl(asio::ip::make_address_v4(cfg.host).to_uint());
        for (int a = 1; a <= cfg.src_addrs; ++a) {
            sockaddr_in sa{};
            sa.sin_family = AF_INET;
            sa.sin_addr.s_addr = htonl((127u << 24) | static_cast<unsigned>(a));
            sh.src.push_back(sa);
        }
        sh.setup_limit = std::max(1, cfg.connect_concurrency / cfg.threads);
        sh.payload = make_payload(cfg.payload);
        sh.seq_cols =
            static_cast<std::uint32_t>(cfg.tgt == target::b1 ? 1 : std::max(1, cfg.publishers));
    }
    std::uint32_t next_id = 0;
    auto add_conn = [&](bool pub, bool slow, int k) {
        shard& sh = *shards[static_cast<std::size_t>(next_id) % shards.size()];
        sh.conns.push_back(std::make_unique<conn>(sh));
        conn* cn = sh.conns.back().get();
        cn->global_id = next_id++;
        cn->is_pub = pub;
        cn->slow = slow;
        if (pub) {
            cn->pub_index = static_cast<std::uint32_t>(k);
            cn->pub_topic =
                cfg.per_publisher_topic ? cfg.topic + "/" + std::to_string(k) : cfg.topic;
            cn->json_prefix = "{\"type\":\"publish\",\"topic\":\"" + cn->pub_topic +
                              "\",\"qos\":" + std::to_string(cfg.qos) + ",";
            if (cfg.qos == 1) {
                std::size_t ring = 1;
                while (ring < static_cast<std::size_t>(cfg.inflight) * 2)
                    ring <<= 1;
                cn->ring_key.assign(ring, ~0ull);
                cn->ring_time.assign(ring, 0);
            }
            sh.pubs.push_back(cn);
        } else if (slow) {
            sh.slows.push_back(cn);
        } else {
            cn->sub_index = static_cast<std::uint32_t>(sh.subs.size());
            sh.subs.push_back(cn);
        }
    };
    for (int i = 0; i < cfg.subscribers; ++i)
        add_conn(false, false, i);
    for (int i = 0; i < cfg.slow; ++i)
        add_conn(false, true, i);
    next_id = 0;  // publishers spread over shards the same way
    for (int i = 0; i < cfg.publishers; ++i) {
        next_id = static_cast<std::uint32_t>(cfg.subscribers + cfg.slow + i);
        add_conn(true, false, i);
    }
    if (cfg.firehose_rate > 0) {
        shard& sh = *shards[0];
        sh.conns.push_back(std::make_unique<conn>(sh));
        conn* cn = sh.conns.back().get();
        cn->global_id = static_cast<std::uint32_t>(cfg.subscribers + cfg.slow + cfg.publishers);
        cn->is_pub = true;
        cn->firehose = true;
        sh.fire = cn;
        sh.fire_payload = make_payload(cfg.firehose_payload);
    }
    for (auto& sh : shards)
        sh->expect.assign(sh->subs.size() * sh->seq_cols, cfg.tgt == target::b1 ? ~0ull : 0ull);
    g.fanout = static_cast<std::uint64_t>(cfg.subscribers);
    for (auto& sh : shards)
        if (!sh->pubs.empty()) {
            g.loop_leader = sh->index;
            break;
        }
    {
        std::uint64_t w = cfg.window;
        // Auto: enough in flight to keep every stage busy (>= 1024 deliveries, >= 2 messages),
        // little enough not to overrun the queues of the system under test.
        if (w == 0)
            w = std::max<std::uint64_t>(
                2, (1024 + g.fanout - 1) / std::max<std::uint64_t>(g.fanout, 1));
        g.window_deliveries = w * std::max<std::uint64_t>(g.fanout, 1);
    }

    std::vector<std::thread> threads;
    std::vector<std::unique_ptr<asio::executor_work_guard<asio::io_context::executor_type>>> guards;
    for (auto& sh : shards) {
        guards.push_back(
            std::make_unique<asio::executor_work_guard<asio::io_context::executor_type>>(
                sh->io.get_executor()));
        asio::post(sh->io, [s = sh.get()] { s->wait_events(); });
        threads.emplace_back([s = sh.get()] { s->io.run(); });
    }

    auto count = [&](auto field) {
        int n = 0;
        for (auto& sh : shards)
            n += (sh->c.*field).load(std::memory_order_relaxed);
        return n;
    };
    auto wait_setup = [&](auto ready, auto failed, int want, double timeout) {
        const std::uint64_t t0 = now_ns();
        while (count(ready) + count(failed) < want &&
               static_cast<double>(now_ns() - t0) / 1e9 < timeout && !stopping())
            sleep_s(0.005);
    };

    // Phase 1: subscribers (the measured connection setups), slow consumers, then publishers.
    std::fprintf(stderr, "phase=setup subscribers=%d slow=%d publishers=%d target=%s\n",
                 cfg.subscribers, cfg.slow, cfg.publishers, cfg.target_name.c_str());
    const std::uint64_t setup_t0 = now_ns();
    for (auto& sh : shards) {
        std::vector<conn*> list = sh->subs;
        list.insert(list.end(), sh->slows.begin(), sh->slows.end());
        asio::post(sh->io, [s = sh.get(), list] { s->start_setups(list); });
    }
    wait_setup(&shard_counters::subs_ready, &shard_counters::subs_failed,
               cfg.subscribers + cfg.slow, cfg.setup_timeout);
    const std::uint64_t setup_t1 = now_ns();
    std::uint64_t first_start = ~0ull, last_done = 0;
    for (auto& sh : shards) {
        const std::uint64_t f = sh->c.first_setup_start.load(std::memory_order_relaxed);
        if (f) first_start = std::min(first_start, f);
        last_done = std::max(last_done, sh->c.last_sub_setup_done.load(std::memory_order_relaxed));
    }
    const int subs_ok = count(&shard_counters::subs_ready);
    for (auto& sh : shards) {
        std::vector<conn*> list = sh->pubs;
        if (sh->fire) list.push_back(sh->fire);
        asio::post(sh->io, [s = sh.get(), list] { s->start_setups(list); });
    }
    wait_setup(&shard_counters::pubs_ready, &shard_counters::pubs_failed,
               cfg.publishers + (cfg.firehose_rate > 0 ? 1 : 0), cfg.setup_timeout);
    // Let in-flight setup results (late SUBACKs etc.) settle and the processes go idle.
    pause_s(0.3);
    sample_all(&watched::setup);
    const proc_sample self_setup = sample_self();
    for (auto& sh : shards)
        asio::post(sh->io, [s = sh.get()] { s->schedule_pings(); });

    if (cfg.hold > 0) {
        std::fprintf(stderr, "phase=hold seconds=%.1f\n", cfg.hold);
        pause_s(cfg.hold);
        sample_all(&watched::setup);  // idle memory after the hold
    }

    // Phase 2: publish (or, for B1, tell the floor program to start writing).
    g.ph.store(static_cast<int>(phase::publishing));
    if (cfg.tgt == target::b1) {
        for (auto& sh : shards) {
            if (sh->subs.empty()) continue;
            asio::post(sh->io, [s = sh.get()] {
                for (conn* cn : s->subs) {
                    if (cn->state != conn::st::ready) continue;
                    s->queue_app(cn, "{\"type\":\"start\"}", ws::text);
                    s->flush_dirty();
                    break;
                }
            });
            break;
        }
    }
    for (auto& sh : shards)
        asio::post(sh->io, [s = sh.get()] {
            s->start_publishing();
            s->start_firehose();
        });
    std::fprintf(stderr, "phase=warmup seconds=%.1f\n", cfg.warmup);
    pause_s(cfg.warmup);

    sample_all(&watched::m0);
    const proc_sample self_m0 = sample_self();
    const std::uint64_t sent0 = g.total_sent(), del0 = g.total_delivered();
    std::uint64_t acked0 = 0;
    for (auto& sh : shards)
        acked0 += sh->c.acked.load();
    const std::uint64_t t_m0 = now_ns();
    g.measuring.store(true);
    std::fprintf(stderr, "phase=measure seconds=%.1f\n", cfg.duration);
    while (static_cast<double>(now_ns() - t_m0) / 1e9 < cfg.duration && !stopping()) {
        pause_s(std::min(0.25, cfg.duration - static_cast<double>(now_ns() - t_m0) / 1e9 + 0.001));
        for (auto& w : watch)
            w.rss_max = std::max(w.rss_max, sample_pid(w.pid).rss_kb);
    }
    g.measuring.store(false);
    const std::uint64_t t_m1 = now_ns();
    const std::uint64_t sent1 = g.total_sent(), del1 = g.total_delivered();
    std::uint64_t acked1 = 0;
    for (auto& sh : shards)
        acked1 += sh->c.acked.load();
    sample_all(&watched::m1);
    const proc_sample self_m1 = sample_self();

    // Phase 3: stop publishing and let what is in flight arrive.
    g.ph.store(static_cast<int>(phase::stopped));
    std::fprintf(stderr, "phase=drain\n");
    const std::uint64_t t_d0 = now_ns();
    const bool track_tail = cfg.tgt != target::b1 && cfg.publishers > 0;
    while (static_cast<double>(now_ns() - t_d0) / 1e9 < cfg.drain && !stopping()) {
        if (track_tail && g.total_delivered() >= g.total_sent() * g.fanout) break;
        sleep_s(0.01);
    }
    sleep_s(0.05);
    for (auto& sh : shards) {
        std::atomic<bool> done{false};
        asio::post(sh->io, [s = sh.get(), &done] {
            s->publish_counters();
            done = true;
        });
        while (!done)
            sleep_s(0.001);
    }
    // Phase 4: close every connection (bounded by --close-timeout; see the top of the file).
    std::fprintf(stderr, "phase=close timeout=%.1f\n", cfg.close_timeout);
    for (auto& sh : shards)
        asio::post(sh->io, [s = sh.get()] { s->finish(); });
    for (auto& t : threads)
        t.join();

    // ---- results ----
    histogram lat, ack_lat, setup_lat;
    std::uint64_t gaps = 0, late = 0, bad = 0, errors = 0, other = 0, pub_err = 0, lost_conns = 0,
                  proto = 0, blocked = 0, throttled = 0, stalls = 0, unmatched = 0, overwrites = 0,
                  slow_bytes = 0, slow_closed = 0, tail = 0, close_attempted = 0, close_clean = 0,
                  close_fallback = 0, close_errors = 0, close_ns = 0;
    std::string first_error;
    std::vector<std::uint64_t> sent_by_pub(static_cast<std::size_t>(std::max(1, cfg.publishers)),
                                           0);
    for (auto& sh : shards)
        for (conn* p : sh->pubs)
            sent_by_pub[p->pub_index] = p->next_seq;
    for (auto& sh : shards) {
        lat.merge(sh->lat);
        ack_lat.merge(sh->ack_lat);
        setup_lat.merge(sh->setup_lat);
        gaps += sh->gaps;
        late += sh->late;
        bad += sh->bad_payload;
        errors += sh->error_frames;
        other += sh->other_frames;
        pub_err += sh->publish_errors;
        lost_conns += sh->closed_unexpectedly;
        proto += sh->protocol_errors;
        blocked += sh->inflight_blocked;
        throttled += sh->throttled;
        stalls += sh->stalls;
        unmatched += sh->ack_unmatched;
        overwrites += sh->ring_overwrites;
        if (first_error.empty()) first_error = sh->first_error;
        close_attempted += sh->close_attempted;
        close_clean += sh->close_clean;
        close_fallback += sh->close_fallback;
        close_errors += sh->close_errors;
        close_ns = std::max(close_ns, sh->close_ns);
        for (conn* s : sh->slows) {
            slow_bytes += s->slow_bytes;
            slow_closed += s->slow_eof ? 1 : 0;
        }
        if (track_tail) {
            for (conn* s : sh->subs) {
                if (s->state == conn::st::failed) continue;  // never subscribed
                for (std::uint32_t p = 0; p < sh->seq_cols; ++p) {
                    const std::uint64_t e =
                        sh->expect[static_cast<std::size_t>(s->sub_index) * sh->seq_cols + p];
                    if (sent_by_pub[p] > e) tail += sent_by_pub[p] - e;
                }
            }
        }
    }
    const double win_s = static_cast<double>(t_m1 - t_m0) / 1e9;
    const double deliveries_w = static_cast<double>(del1 - del0);
    const proc_sample self_end = sample_self();

    json_out j;
    j.o << '{';
    j.str("tool", "mqttws-loadgen");
    j.str("label", cfg.label);
    j.open("config");
    j.str("target", cfg.target_name);
    j.num("port", cfg.port);
    j.num("subscribers", cfg.subscribers);
    j.num("publishers", cfg.publishers);
    j.num("slow", cfg.slow);
    j.str("topic", cfg.topic);
    j.str("filter", cfg.filter);
    j.num("qos", cfg.qos);
    j.num("payload", static_cast<double>(cfg.payload));
    j.num("rate", cfg.rate);
    j.num("window_deliveries", static_cast<double>(cfg.rate > 0 ? 0 : g.window_deliveries));
    j.num("duration", cfg.duration);
    j.num("warmup", cfg.warmup);
    j.num("threads", cfg.threads);
    j.num("src_addrs", cfg.src_addrs);
    j.close();
    j.open("setup");
    j.num("subscribers_ok", subs_ok);
    j.num("subscribers_failed", count(&shard_counters::subs_failed));
    j.num("publishers_ok", count(&shard_counters::pubs_ready));
    j.num("publishers_failed", count(&shard_counters::pubs_failed));
    const double setup_span =
        last_done > first_start ? static_cast<double>(last_done - first_start) / 1e9 : 0;
    j.num("seconds", std::round(static_cast<double>(setup_t1 - setup_t0) / 1e6) / 1e3);
    j.num("per_s", setup_span > 0 ? std::round(subs_ok / setup_span) : 0);
    j.hist_us("latency_us", setup_lat);
    j.close();
    j.num("window_s", std::round(win_s * 1000) / 1000);
    j.open("published");
    j.num("total", static_cast<double>(g.total_sent()));
    j.num("in_window", static_cast<double>(sent1 - sent0));
    j.num("offered_per_s", std::round(static_cast<double>(sent1 - sent0) / win_s));
    j.num("target_per_s", cfg.rate);
    j.num("acked_in_window", static_cast<double>(acked1 - acked0));
    j.num("errors", static_cast<double>(pub_err));
    j.num("inflight_blocked", static_cast<double>(blocked));
    j.num("throttled_ticks", static_cast<double>(throttled));
    j.num("closed_loop_stalls", static_cast<double>(stalls));
    j.num("closed_loop_written_off", static_cast<double>(g.written_off.load()));
    j.close();
    j.open("delivered");
    j.num("total", static_cast<double>(g.total_delivered()));
    j.num("in_window", deliveries_w);
    j.num("per_s", std::round(deliveries_w / win_s));
    j.num("expected_total", track_tail ? static_cast<double>(g.total_sent() * g.fanout) : NAN);
    j.num("lost", track_tail ? static_cast<double>(gaps + tail) : static_cast<double>(gaps));
    j.num("gaps", static_cast<double>(gaps));
    j.num("tail_missing", static_cast<double>(tail));
    j.num("dup_or_late", static_cast<double>(late));
    j.num("bad_payload", static_cast<double>(bad));
    j.close();
    j.hist_us("latency_us", lat);
    j.hist_us("ack_latency_us", ack_lat);
    j.open("errors");
    j.num("error_frames", static_cast<double>(errors));
    j.num("other_frames", static_cast<double>(other));
    j.num("connections_lost", static_cast<double>(lost_conns));
    j.num("protocol_errors", static_cast<double>(proto));
    j.num("ack_unmatched", static_cast<double>(unmatched));
    j.num("ack_never", static_cast<double>(overwrites));
    j.str("first", first_error);
    j.close();
    j.open("slow");
    j.num("connections", cfg.slow);
    j.num("bytes_pending_at_end", static_cast<double>(slow_bytes));
    j.num("closed_by_server", static_cast<double>(slow_closed));
    j.str("filter", cfg.slow_filter);
    j.close();
    // How the connections ended: `clean` = the server closed after our goodbye (or answered it
    // with a close frame before the deadline); `fallback_resets` = reset at the deadline (or
    // never set up, or --close-timeout 0); `errors` = a socket error while closing.
    j.open("close");
    j.num("timeout_s", cfg.close_timeout);
    j.num("attempted", static_cast<double>(close_attempted));
    j.num("clean", static_cast<double>(close_clean));
    j.num("fallback_resets", static_cast<double>(close_fallback));
    j.num("errors", static_cast<double>(close_errors));
    j.num("ms", std::round(static_cast<double>(close_ns) / 1e5) / 10);
    j.close();
    j.boolean("interrupted", stopping());
    j.open("firehose");
    j.str("topic", cfg.firehose_topic);
    j.num("rate", cfg.firehose_rate);
    j.num("payload", static_cast<double>(cfg.firehose_payload));
    j.num("sent", static_cast<double>(shards[0]->fire_sent));
    j.num("bytes", static_cast<double>(shards[0]->fire_bytes));
    j.close();
    const double self_cpu_w = static_cast<double>(self_m1.cpu_us - self_m0.cpu_us);
    j.open("self");
    j.num("cpu_us_window", self_cpu_w);
    j.num("cpu_pct_window", std::round(self_cpu_w / (win_s * 1e6) * 1000) / 10);
    j.num("cpu_us_per_delivery",
          deliveries_w > 0 ? std::round(self_cpu_w / deliveries_w * 100) / 100 : NAN);
    j.num("cpu_us_total", static_cast<double>(self_end.cpu_us - self_start.cpu_us));
    j.num("cpu_us_setup", static_cast<double>(self_setup.cpu_us - self_start.cpu_us));
    j.num("rss_kb", static_cast<double>(self_end.rss_kb));
    j.close();
    // Watched processes: the system under test.
    double sys_cpu_w = 0, sys_rss_delta = 0, sys_rss_setup = 0, sys_rss_max = 0;
    bool all_ok = !watch.empty();
    j.key("processes");
    j.o << '[';
    for (std::size_t i = 0; i < watch.size(); ++i) {
        const auto& w = watch[i];
        if (i) j.o << ',';
        j.o << '{';
        j.first = true;
        j.str("name", w.name);
        j.num("pid", w.pid);
        j.boolean("alive", w.m1.ok);
        all_ok = all_ok && w.m1.ok && w.m0.ok;
        j.num("cpu_us_window", static_cast<double>(w.m1.cpu_us - w.m0.cpu_us));
        j.num("cpu_us_setup", static_cast<double>(w.setup.cpu_us - w.start.cpu_us));
        j.num("rss_kb_start", static_cast<double>(w.start.rss_kb));
        j.num("rss_kb_setup", static_cast<double>(w.setup.rss_kb));
        j.num("rss_kb_end", static_cast<double>(w.m1.rss_kb));
        j.num("rss_kb_max", static_cast<double>(w.rss_max));
        j.o << '}';
        sys_cpu_w += static_cast<double>(w.m1.cpu_us - w.m0.cpu_us);
        sys_rss_delta += static_cast<double>(w.setup.rss_kb) - static_cast<double>(w.start.rss_kb);
        sys_rss_setup += static_cast<double>(w.setup.rss_kb);
        sys_rss_max += static_cast<double>(w.rss_max);
    }
    j.o << ']';
    j.first = false;
    j.open("system");
    j.boolean("sampled", all_ok);
    j.num("cpu_us_window", sys_cpu_w);
    j.num("cpu_pct_window", std::round(sys_cpu_w / (win_s * 1e6) * 1000) / 10);
    j.num("cpu_us_per_delivery",
          deliveries_w > 0 && all_ok ? std::round(sys_cpu_w / deliveries_w * 1000) / 1000 : NAN);
    j.num("rss_kb_setup", sys_rss_setup);
    j.num("rss_kb_max", sys_rss_max);
    const int conns = subs_ok + count(&shard_counters::pubs_ready);
    j.num("rss_bytes_per_connection",
          conns > 0 && all_ok ? std::round(sys_rss_delta * 1024 / conns) : NAN);
    j.num("loadgen_cpu_share", sys_cpu_w + self_cpu_w > 0
                                   ? std::round(self_cpu_w / (sys_cpu_w + self_cpu_w) * 1000) / 1000
                                   : NAN);
    j.close();
    j.o << "}\n";
    std::fputs(j.o.str().c_str(), stdout);
    std::fflush(stdout);
    std::fprintf(stderr,
                 "phase=done delivered/s=%.0f p99=%.1fus lost=%" PRIu64
                 " close_fallback_resets=%" PRIu64 "\n",
                 deliveries_w / win_s, static_cast<double>(lat.percentile(0.99)) / 1e3,
                 track_tail ? gaps + tail : gaps, close_fallback);
    guards.clear();
    return stopping() ? 3 : 0;
}
