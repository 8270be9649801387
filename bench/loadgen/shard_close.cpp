// The end of the run, on the shard's thread: what the slow consumers had pending, then every
// connection closed the way a client closes it (close frame 1000; MQTT: DISCONNECT first) and
// read until the server closes, at most --close-timeout for all of them; the rest are reset.
// When the last one is done the shard's io_context stops (see the top of main.cpp).
#include <sys/socket.h>

#include <cerrno>
#include <chrono>
#include <cstdint>

#include "../common/bench_common.hpp"
#include "config.hpp"
#include "shard.hpp"
#include "wire.hpp"

namespace bench {

// ---- closing ----------------------------------------------------------------------------------

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
    // Close every connection as a client does (see the top of main.cpp); the server closes
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

}  // namespace bench
