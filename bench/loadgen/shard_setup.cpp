// Connection setup, on the shard's thread: at most setup_limit at once per shard; connect, the
// WebSocket upgrade request, then the hello (auth or CONNECT) and, for subscribers, the
// subscription. The replies are read in shard_io.cpp, which calls back into setup_done().
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>
#include <sys/socket.h>

#include <cerrno>
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "../common/bench_common.hpp"
#include "config.hpp"
#include "shard.hpp"
#include "wire.hpp"

namespace bench {

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
        const char* id_field = cn->is_pub && g.cfg.devices ? "deviceId" : "clientId";
        queue_app(
            cn,
            std::string("{\"type\":\"auth\",\"") + id_field + "\":\"" + id + "\",\"msgid\":\"a\"}",
            ws::text);
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

}  // namespace bench
