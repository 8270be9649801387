// --self-test, on the main thread: self_test() checks the codecs and the histogram, then runs the
// loopback check of the closed loop: loop_server (on a thread of its own; read once joined)
// against a child load generator (this binary). Everything but self_test() is file-local.
#include "self_test.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cinttypes>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <memory>
#include <set>
#include <sstream>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "../common/bench_common.hpp"
#include "wire.hpp"

namespace bench {
namespace {

// ---- loopback self-test of the closed loop ----------------------------------------------------
// The codecs are checked in isolation (self_test() below); this checks the shard machinery end to
// end. A tiny in-process stand-in for mqttws (one thread, poll(), 127.0.0.1, an ephemeral port)
// speaks the JSON subset the load generator uses: auth, subscribe, publish (QoS 1: acked at once)
// and routes every publish to the subscribers as a QoS 1 `message` with its own msgid, keeping at
// most 64 of them unacknowledged per subscriber as mqttws does (so a subscriber whose `ack`s do not
// come back gets nothing more). For the first 300 ms after the first publish it delivers nothing,
// which forces the closed loop to write off (stall) several times. The load generator runs as a
// child process (this binary) with a fan-in like S2, closed loop, QoS 1, and the server checks from
// outside what the loop promises: never more than the window (W) in flight end to end — publishes
// received minus deliveries sent — except one more W per write-off while nothing arrives, and
// within W again once the late deliveries have come, because those must not be counted on top of
// what was written off. It is run with --threads 1 and 4: with 4, shards that each filled "the"
// window (from snapshots of each other's counters) put up to 4 W in flight at once. Bounded: ~2 s
// per run, the child is killed after 30 s.

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

}  // namespace

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

}  // namespace bench
