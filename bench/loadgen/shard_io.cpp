// The per-message paths of a shard, on its thread: reading (epoll events, recv into the shard's
// buffer, WebSocket / MQTT / JSON parsing in place, deliveries and acknowledgements), writing
// (queued output, send on the dirty connections at the end of each batch) and publishing (open
// loop paced on a timer, closed loop against the process-wide window, the firehose, pings). They
// are kept in one translation unit so that the compiler can inline them into each other.
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cinttypes>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <string>
#include <string_view>

#include "../common/bench_common.hpp"
#include "config.hpp"
#include "shard.hpp"
#include "wire.hpp"

namespace bench {

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
// each take the same room (see the top of main.cpp).
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
        // deliveries that come after all are not counted twice (see the top of main.cpp).
        if (index == g.loop_leader) {
            // Stalled: nothing arrived (a late delivery that fills the floor is progress too,
            // or a slow catch-up after a write-off would look like the next stall) and, at
            // QoS 1, no publish was acknowledged, for 50 ms or twice the latest delivery's
            // latency, whichever is longer. A system that is busy with what we sent, or
            // delivers slowly, is not stalled: writing off would put another window in flight
            // and slow it down further (see the top of main.cpp).
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

}  // namespace bench
