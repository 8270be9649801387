// A shard: one I/O thread with its io_context, its epoll set and its connections (`conn`), and
// the state it shares with the controller and the other shards (`shard_counters`,
// `shared_state`). Its methods: shard_setup.cpp (connection setup), shard_io.cpp (reading,
// writing, publishing: the per-message paths, in one translation unit so that they inline into
// each other) and shard_close.cpp (the close at the end of the run). The closed loop is described
// at the top of main.cpp.
//
// Thread safety: a conn and the plain members of a shard are touched only by that shard's thread
// (the controller reads them after the threads have been joined); `shard_counters` and the
// atomics of `shared_state` are read across threads; the rest of `shared_state` is set by the
// controller before the shards start publishing. The shared_state methods are inline: the closed
// loop calls them for every publish.
#pragma once

#include <netinet/in.h>
#include <sys/epoll.h>
#include <unistd.h>

#include <algorithm>
#include <asio.hpp>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "../common/bench_common.hpp"
#include "config.hpp"
#include "wire.hpp"

namespace bench {

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
    // Closed loop (see the top of main.cpp). Set before the shards start publishing.
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

    // Declared `inline` (parse_ws, on_ws_message, on_mqtt_packet, next_publisher, publish_one,
    // claim_window): per-message steps that are defined in shard_io.cpp and called only there, so
    // that the compiler may fold them into their one caller as it did when this was one file.
    // Calling one from another file fails to compile ("used but never defined").
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
    inline std::size_t parse_ws(conn* cn, char* p, std::size_t n, std::uint64_t now);
    inline void on_ws_message(conn* cn, ws::opcode op, char* p, std::size_t n, std::uint64_t now);
    void feed_mqtt(conn* cn, const char* p, std::size_t n, std::uint64_t now);
    std::size_t parse_mqtt(conn* cn, const char* p, std::size_t n, std::uint64_t now);
    inline void on_mqtt_packet(conn* cn, const mqtt::packet& pk, std::uint64_t now);
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
    inline conn* next_publisher();
    inline bool publish_one(std::uint64_t now);
    inline bool claim_window();
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

inline std::uint64_t shared_state::total_sent() const {
    std::uint64_t s = 0;
    for (auto& sh : *shards)
        s += sh->c.sent.load(std::memory_order_relaxed);
    return s;
}
inline std::uint64_t shared_state::loop_progress() const {
    std::uint64_t s = 0;
    for (auto& sh : *shards)
        s += sh->c.progress.load(std::memory_order_relaxed);
    return s;
}
inline std::uint64_t shared_state::loop_resolved() const {
    return std::max(loop_progress(), loop_floor.load(std::memory_order_relaxed));
}
inline std::uint64_t shared_state::loop_activity() const {
    std::uint64_t s = 0;
    for (auto& sh : *shards)
        s += sh->c.progress.load(std::memory_order_relaxed) +
             sh->c.acked.load(std::memory_order_relaxed);
    return s;
}
inline std::uint64_t shared_state::stall_after() const {
    std::uint64_t lat = 0;
    for (auto& sh : *shards)
        lat = std::max(lat, sh->c.last_latency.load(std::memory_order_relaxed));
    return std::max(stall_ns, 2 * lat);
}
inline std::uint64_t shared_state::total_delivered() const {
    std::uint64_t s = 0;
    for (auto& sh : *shards)
        s += sh->c.delivered.load(std::memory_order_relaxed);
    return s;
}

}  // namespace bench
