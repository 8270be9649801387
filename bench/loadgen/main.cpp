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
//
// Files: config.hpp/.cpp (the command line), shard.hpp with shard_setup.cpp, shard_io.cpp and
// shard_close.cpp (the I/O threads), self_test.hpp/.cpp (--self-test), report.hpp/.cpp (the JSON
// writer), wire.hpp (the codecs), proc_stats.hpp (CPU and RSS); this file: main(), the
// controller.

#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>

#include <algorithm>
#include <asio.hpp>
#include <atomic>
#include <chrono>
#include <cinttypes>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "../common/bench_common.hpp"
#include "config.hpp"
#include "proc_stats.hpp"
#include "report.hpp"
#include "self_test.hpp"
#include "shard.hpp"
#include "wire.hpp"

namespace bench {
namespace {

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
