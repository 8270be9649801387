// mqttws-b1: the floor for CPU per delivery. Accepts WebSocket connections (plain RFC 6455
// upgrade, no subprotocol), and once any client sends a frame, writes rounds: one prepared,
// unmasked text frame (the benchmark payload, stamped with the round's sequence number and
// send time) to every open connection with one send() each. The next round starts when every
// connection has taken the previous one, so it writes exactly as fast as the readers read.
// What it costs per delivery is what the hardware and the kernel cost; a bridge cannot do
// better than this.
//
// A client's close frame is answered as RFC 6455 asks: a close frame with the same status (when
// no frame is half written) and then the server closes the TCP connection, so a load generator
// that closes cleanly is not left waiting.
//
// Usage: mqttws-b1 [--bind 127.0.0.1] [--port 0] [--payload 64]
// Logs "listening ... port=N" on stderr; on SIGINT/SIGTERM prints its counters and exits.
//
// Thread safety: one thread.

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <sys/socket.h>

#include <asio.hpp>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <list>
#include <memory>
#include <string>

#include "../common/bench_common.hpp"

namespace {

struct client {
    explicit client(asio::io_context& io) : sock(io) {}
    asio::ip::tcp::socket sock;
    std::string in;     // the HTTP request, then client frames not yet complete
    bool open = false;  // upgraded
    bool closed = false;
    std::size_t pending_off = 0;  // bytes of the current frame not yet written
    bool waiting_write = false;
};

class floor_server {
  public:
    floor_server(asio::io_context& io, const std::string& bind, unsigned short port,
                 std::size_t payload)
        : io_(io), acceptor_(io), signals_(io, SIGINT, SIGTERM) {
        const asio::ip::tcp::endpoint ep(asio::ip::make_address(bind), port);
        acceptor_.open(ep.protocol());
        acceptor_.set_option(asio::socket_base::reuse_address(true));
        acceptor_.bind(ep);
        acceptor_.listen(4096);
        std::fprintf(stderr, "mqttws-b1 listening address=%s port=%u\n", bind.c_str(),
                     acceptor_.local_endpoint().port());
        payload_ = bench::make_payload(payload);
        header_ = frame_header(payload_.size());
        frame_ = header_ + payload_;
        signals_.async_wait([this](const asio::error_code&, int) { stop(); });
        accept();
    }

  private:
    static std::string frame_header(std::size_t n) {
        std::string h(1, static_cast<char>(0x81));
        if (n < 126) {
            h += static_cast<char>(n);
        } else if (n <= 0xFFFF) {
            h += static_cast<char>(126);
            h += static_cast<char>(n >> 8);
            h += static_cast<char>(n & 0xFF);
        } else {
            h += static_cast<char>(127);
            for (int s = 56; s >= 0; s -= 8)
                h += static_cast<char>((static_cast<std::uint64_t>(n) >> s) & 0xFF);
        }
        return h;
    }

    void accept() {
        auto c = std::make_shared<client>(io_);
        acceptor_.async_accept(c->sock, [this, c](const asio::error_code& ec) {
            if (!ec) {
                asio::error_code e;
                c->sock.set_option(asio::ip::tcp::no_delay(true), e);
                c->sock.non_blocking(true, e);
                clients_.push_back(c);
                read(c);
            }
            if (acceptor_.is_open()) accept();
        });
    }

    void read(const std::shared_ptr<client>& c) {
        c->sock.async_wait(asio::socket_base::wait_read, [this, c](const asio::error_code& ec) {
            if (ec || c->closed) return;
            char buf[4096];
            for (;;) {
                const ssize_t r = ::recv(c->sock.native_handle(), buf, sizeof buf, MSG_DONTWAIT);
                if (r > 0) {
                    c->in.append(buf, static_cast<std::size_t>(r));
                    if (!c->open) {
                        if (!upgrade(c)) return;
                    }
                    if (c->open && !client_frames(c)) return;  // closed
                    continue;
                }
                if (r < 0 && errno == EINTR) continue;
                if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) break;
                drop(c);
                return;
            }
            read(c);
        });
    }

    bool upgrade(const std::shared_ptr<client>& c) {
        const auto end = c->in.find("\r\n\r\n");
        if (end == std::string::npos) {
            if (c->in.size() > 16384) drop(c);
            return c->in.size() <= 16384;
        }
        std::string lower = c->in.substr(0, end + 2);
        for (auto& ch : lower)
            ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
        const auto at = lower.find("\r\nsec-websocket-key:");
        if (at == std::string::npos) {
            drop(c);
            return false;
        }
        std::size_t v = at + 20;
        while (v < lower.size() && lower[v] == ' ')
            ++v;
        const auto eol = lower.find("\r\n", v);
        std::string key = c->in.substr(v, eol - v);  // original case
        while (!key.empty() && key.back() == ' ')
            key.pop_back();
        const std::string resp =
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            "Sec-WebSocket-Accept: " +
            bench::websocket_accept(key) + "\r\n\r\n";
        asio::error_code ec;
        asio::write(c->sock, asio::buffer(resp), ec);  // tiny; the socket buffer is empty
        if (ec) {
            drop(c);
            return false;
        }
        c->in.erase(0, end + 4);  // frames that came with the request stay
        c->open = true;
        ++open_;
        return true;
    }

    // Client frames: any data frame starts the rounds; a close frame is answered and the
    // connection closed. Returns false once the connection is closed.
    bool client_frames(const std::shared_ptr<client>& c) {
        for (;;) {
            const std::string& in = c->in;
            if (in.size() < 2) return true;
            const auto b1 = static_cast<unsigned char>(in[1]);
            std::size_t hdr = 2;
            std::uint64_t len = b1 & 0x7F;
            if (len == 126) {
                if (in.size() < 4) return true;
                len = (static_cast<std::uint64_t>(static_cast<unsigned char>(in[2])) << 8) |
                      static_cast<unsigned char>(in[3]);
                hdr = 4;
            } else if (len == 127) {
                if (in.size() < 10) return true;
                len = 0;
                for (std::size_t i = 2; i < 10; ++i)
                    len = (len << 8) | static_cast<unsigned char>(in[i]);
                hdr = 10;
            }
            if (len > (1u << 20)) {
                drop(c);
                return false;
            }
            const bool masked = (b1 & 0x80) != 0;
            const std::size_t key_at = hdr;
            if (masked) hdr += 4;
            if (in.size() < hdr + len) return true;
            const unsigned op = static_cast<unsigned char>(in[0]) & 0x0F;
            if (op == 8) {
                char code[2] = {0x03, static_cast<char>(0xE8)};  // 1000 when none was given
                if (len >= 2) {
                    for (std::size_t i = 0; i < 2; ++i)
                        code[i] = static_cast<char>(in[hdr + i] ^ (masked ? in[key_at + i] : 0));
                }
                close_politely(c, code);
                return false;
            }
            c->in.erase(0, hdr + static_cast<std::size_t>(len));
            start();  // any other frame from a client: go
        }
    }

    // Answers a client's close: the close frame back unless a data frame is half written (it
    // would land inside that frame), then closes the socket; the client sees the close frame
    // and/or EOF.
    void close_politely(const std::shared_ptr<client>& c, const char code[2]) {
        if (c->pending_off == 0 || c->pending_off >= frame_.size()) {
            const char reply[4] = {static_cast<char>(0x88), 2, code[0], code[1]};
            (void)::send(c->sock.native_handle(), reply, sizeof reply, MSG_NOSIGNAL | MSG_DONTWAIT);
        }
        drop(c);
    }

    void drop(const std::shared_ptr<client>& c) {
        if (c->closed) return;
        c->closed = true;
        if (c->open) --open_;
        if (c->waiting_write) --waiting_;
        c->waiting_write = false;
        asio::error_code ec;
        c->sock.close(ec);
        clients_.remove(c);
        maybe_next_round();
    }

    // The barrier: the next round once every connection took the current frame.
    void maybe_next_round() {
        if (!running_ || in_round_ || round_posted_ || waiting_ != 0) return;
        round_posted_ = true;
        asio::post(io_, [this] {
            round_posted_ = false;
            round();
        });
    }

    void start() {
        if (running_) return;
        running_ = true;
        std::fprintf(stderr, "mqttws-b1 start connections=%zu\n", open_);
        maybe_next_round();
    }

    // One round: the same prepared frame to every open connection.
    void round() {
        if (open_ == 0) {
            running_ = false;  // every reader left: wait for the next start
            std::fprintf(stderr, "mqttws-b1 idle rounds=%llu frames=%llu\n",
                         static_cast<unsigned long long>(rounds_),
                         static_cast<unsigned long long>(frames_));
            return;
        }
        bench::stamp_payload(frame_.data() + header_.size(), 0, rounds_, bench::now_ns());
        ++rounds_;
        in_round_ = true;
        for (auto it = clients_.begin(); it != clients_.end();) {
            auto c = *it++;
            if (!c->open || c->closed) continue;
            c->pending_off = 0;
            write_some(c);
        }
        in_round_ = false;
        maybe_next_round();
    }

    // Writes what is left of the frame; when the kernel is full, waits for writability.
    void write_some(const std::shared_ptr<client>& c) {
        while (c->pending_off < frame_.size()) {
            const ssize_t w = ::send(c->sock.native_handle(), frame_.data() + c->pending_off,
                                     frame_.size() - c->pending_off, MSG_NOSIGNAL | MSG_DONTWAIT);
            if (w > 0) {
                c->pending_off += static_cast<std::size_t>(w);
                continue;
            }
            if (w < 0 && errno == EINTR) continue;
            if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
                if (!c->waiting_write) {
                    c->waiting_write = true;
                    ++waiting_;
                }
                c->sock.async_wait(asio::socket_base::wait_write,
                                   [this, c](const asio::error_code& ec) {
                                       if (ec || c->closed) return;
                                       write_some(c);
                                   });
                return;
            }
            drop(c);
            return;
        }
        ++frames_;
        if (c->waiting_write) {
            c->waiting_write = false;
            --waiting_;
            maybe_next_round();
        }
    }

    void stop() {
        std::fprintf(stderr, "mqttws-b1 stop rounds=%llu frames=%llu\n",
                     static_cast<unsigned long long>(rounds_),
                     static_cast<unsigned long long>(frames_));
        asio::error_code ec;
        acceptor_.close(ec);
        io_.stop();
    }

    asio::io_context& io_;
    asio::ip::tcp::acceptor acceptor_;
    asio::signal_set signals_;
    std::list<std::shared_ptr<client>> clients_;
    std::string payload_, header_, frame_;
    std::size_t open_ = 0, waiting_ = 0;
    bool running_ = false, in_round_ = false, round_posted_ = false;
    unsigned long long rounds_ = 0, frames_ = 0;
};

}  // namespace

int main(int argc, char** argv) {
    std::string bind = "127.0.0.1";
    unsigned short port = 0;
    std::size_t payload = 64;
    for (int i = 1; i < argc; ++i) {
        const std::string a = argv[i];
        auto val = [&]() -> std::string {
            if (i + 1 >= argc) {
                std::fprintf(stderr, "mqttws-b1: missing value for %s\n", a.c_str());
                std::exit(2);
            }
            return argv[++i];
        };
        if (a == "--bind")
            bind = val();
        else if (a == "--port")
            port = static_cast<unsigned short>(std::atoi(val().c_str()));
        else if (a == "--payload")
            payload = std::strtoull(val().c_str(), nullptr, 10);
        else if (a == "--help" || a == "-h") {
            std::puts(
                "mqttws-b1 [--bind 127.0.0.1] [--port 0] [--payload 64]\n"
                "Writes one prepared WebSocket text frame per round to every connection,\n"
                "as fast as they read; a round starts after any client sends a frame.");
            return 0;
        } else {
            std::fprintf(stderr, "mqttws-b1: unknown option %s\n", a.c_str());
            return 2;
        }
    }
    signal(SIGPIPE, SIG_IGN);
    try {
        asio::io_context io(1);
        floor_server s(io, bind, port, payload);
        io.run();
    } catch (const std::exception& e) {
        std::fprintf(stderr, "mqttws-b1: %s\n", e.what());
        return 1;
    }
    return 0;
}
