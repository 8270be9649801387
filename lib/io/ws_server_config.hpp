// Internal to ws_server: how websocketpp is configured for the bridge — the socket layer that
// ends connections gently (draining), the message type that lets recipients share a payload,
// and the server config (one thread, small read buffers). Included only through
// ws_server_impl.hpp, by ws_server.cpp and ws_server_tls.cpp.
//
// Thread safety: as ws_server — the io_context's one thread only.
#pragma once

#include <sys/socket.h>

#include <asio/steady_timer.hpp>
#include <chrono>
#include <memory>
#include <string>
#include <websocketpp/concurrency/none.hpp>
#include <websocketpp/server.hpp>

#include "core/actions.hpp"
#include "io/log.hpp"

namespace mqttws {
namespace ws_detail {

// Reading (and discarding) what a peer still sends after the bridge's close frame, for at most
// this many bytes and this long, before the socket is closed.
inline constexpr std::size_t max_drain_bytes = 64u << 20;
inline constexpr std::chrono::milliseconds max_drain_time{2000};

// Drains a socket after its write side was shut down: reads and discards until the peer closes,
// or the bounds are reached; then calls `done` (once).
class drain_op : public std::enable_shared_from_this<drain_op> {
  public:
    using done_handler = websocketpp::transport::asio::socket::shutdown_handler;
    // `owner` keeps the socket alive until the drain has finished.
    drain_op(asio::ip::tcp::socket& socket, std::shared_ptr<void> owner, done_handler done)
        : socket_(socket),
          owner_(std::move(owner)),
          done_(std::move(done)),
          timer_(socket.get_executor()) {}

    void start() {
        timer_.expires_after(max_drain_time);
        timer_.async_wait([self = shared_from_this()](const std::error_code& ec) {
            if (!ec) self->finish();
        });
        read();
    }

  private:
    void read() {
        socket_.async_read_some(
            asio::buffer(buffer_),
            [self = shared_from_this()](const std::error_code& ec, std::size_t n) {
                if (ec || n >= self->left_) {
                    self->finish();  // closed by the peer (or gone), or it sent too much
                    return;
                }
                self->left_ -= n;
                self->read();
            });
    }
    void finish() {
        if (finished_) return;
        finished_ = true;
        timer_.cancel();
        std::error_code ignored;
        socket_.cancel(ignored);
        done_(std::error_code());
    }

    asio::ip::tcp::socket& socket_;
    std::shared_ptr<void> owner_;
    done_handler done_;
    asio::steady_timer timer_;
    std::array<char, 16384> buffer_{};
    std::size_t left_ = max_drain_bytes;
    bool finished_ = false;
};

// websocketpp's socket component (plain or TLS) with a gentler end. websocketpp ends a
// connection with shutdown(SHUT_RDWR): data the peer still sends then makes the kernel answer
// with a TCP RST, and the RST can destroy the close frame in flight — a client that sent a
// message over --max-frame-bytes saw 1006 instead of 1009 (for 16 MiB, nearly always). Here
// only the write side is shut down (after TLS's close_notify), and the socket is drained,
// bounded in bytes and time, before websocketpp closes it.
template <class Socket>
class draining_connection : public Socket {
  public:
    using type = draining_connection;
    using ptr = std::shared_ptr<type>;

    void async_shutdown(websocketpp::transport::asio::socket::shutdown_handler done) {
        auto self = std::static_pointer_cast<draining_connection>(this->get_shared());
        if (this->is_secure()) {
            Socket::async_shutdown(
                [self, done](const std::error_code&) mutable { self->drain(std::move(done)); });
        } else {
            drain(std::move(done));
        }
    }

  private:
    void drain(websocketpp::transport::asio::socket::shutdown_handler done) {
        asio::ip::tcp::socket& socket = this->get_next_layer();  // TCP, under TLS if any
        std::error_code ec;
        // websocketpp's own read may still be pending: with two reads queued, the peer's EOF
        // completes only the first (asio's edge-triggered reactor), and the drain would wait for
        // its time bound. So that one ends now, and the drain is the only reader.
        socket.cancel(ec);
        socket.shutdown(asio::ip::tcp::socket::shutdown_send, ec);
        std::make_shared<drain_op>(socket, this->get_shared(), std::move(done))->start();
    }
};

template <class Endpoint>
class draining_endpoint : public Endpoint {
  public:
    using type = draining_endpoint;
    using socket_con_type = draining_connection<typename Endpoint::socket_con_type>;
    using socket_con_ptr = typename socket_con_type::ptr;
};

// websocketpp's message, with one difference: an outgoing message may borrow its payload from a
// shared string instead of owning a copy. websocketpp writes a prepared message as two buffers,
// its header and its payload; the bridge puts the WebSocket frame header and the recipient's own
// bytes (split_frame::head) in the header, and lets the payload be the part every recipient of
// a broker message shares — so a fan-out to N resumable sessions writes N small headers and one
// body, instead of N copies of the body. Incoming messages own their payload, as before.
template <template <class> class Manager>
class shared_payload_message {
  public:
    using ptr = std::shared_ptr<shared_payload_message>;
    using con_msg_man_type = Manager<shared_payload_message>;
    using con_msg_man_ptr = typename con_msg_man_type::ptr;
    using con_msg_man_weak_ptr = typename con_msg_man_type::weak_ptr;

    explicit shared_payload_message(const con_msg_man_ptr manager) : manager_(manager) {}
    shared_payload_message(const con_msg_man_ptr manager, websocketpp::frame::opcode::value op,
                           std::size_t size = 128)
        : manager_(manager), opcode_(op) {
        payload_.reserve(size);
    }

    // The payload is `shared`, kept alive by this message, never copied.
    void borrow_payload(frame_ptr shared) { shared_ = std::move(shared); }

    bool get_prepared() const { return prepared_; }
    void set_prepared(bool value) { prepared_ = value; }
    bool get_compressed() const { return compressed_; }
    void set_compressed(bool value) { compressed_ = value; }
    bool get_terminal() const { return terminal_; }
    void set_terminal(bool value) { terminal_ = value; }
    bool get_fin() const { return fin_; }
    void set_fin(bool value) { fin_ = value; }
    websocketpp::frame::opcode::value get_opcode() const { return opcode_; }
    void set_opcode(websocketpp::frame::opcode::value op) { opcode_ = op; }
    const std::string& get_header() const { return header_; }
    void set_header(const std::string& header) { header_ = header; }
    void set_header(std::string&& header) { header_ = std::move(header); }
    const std::string& get_extension_data() const { return extension_data_; }
    const std::string& get_payload() const { return shared_ ? *shared_ : payload_; }
    std::string& get_raw_payload() { return payload_; }
    void set_payload(const std::string& payload) { payload_ = payload; }
    void set_payload(const void* payload, std::size_t len) {
        payload_.assign(static_cast<const char*>(payload), len);
    }
    void append_payload(const std::string& payload) { payload_.append(payload); }
    void append_payload(const void* payload, std::size_t len) {
        payload_.append(static_cast<const char*>(payload), len);
    }
    bool recycle() {
        const con_msg_man_ptr manager = manager_.lock();
        return manager ? manager->recycle(this) : false;
    }

  private:
    con_msg_man_weak_ptr manager_;
    std::string header_;
    std::string extension_data_;
    std::string payload_;
    frame_ptr shared_;  // when set, the payload
    websocketpp::frame::opcode::value opcode_ = websocketpp::frame::opcode::text;
    bool prepared_ = false;
    bool fin_ = true;
    bool terminal_ = false;
    bool compressed_ = false;
};

// websocketpp configuration on top of a transport config (`asio` or `asio_tls`): one thread
// owns every connection (no locks, no strands), and a small per-connection read buffer (the
// default 16 KiB is most of an idle connection's memory; frames larger than it take more reads).
template <class Base>
struct config : Base {
    using type = config;
    using base = Base;

    typedef websocketpp::concurrency::none concurrency_type;
    typedef shared_payload_message<websocketpp::message_buffer::alloc::con_msg_manager>
        message_type;
    typedef websocketpp::message_buffer::alloc::con_msg_manager<message_type> con_msg_manager_type;
    typedef websocketpp::message_buffer::alloc::endpoint_msg_manager<con_msg_manager_type>
        endpoint_msg_manager_type;
    typedef websocketpp::log::basic<concurrency_type, websocketpp::log::elevel> elog_type;
    typedef websocketpp::log::basic<concurrency_type, websocketpp::log::alevel> alog_type;

    struct transport_config : public base::transport_config {
        typedef typename type::concurrency_type concurrency_type;
        typedef typename type::alog_type alog_type;
        typedef typename type::elog_type elog_type;
        typedef typename type::request_type request_type;
        typedef typename type::response_type response_type;
        typedef draining_endpoint<typename base::transport_config::socket_type> socket_type;
        // No per-connection asio strands: one thread runs every handler.
        static const bool enable_multithreading = false;
        // No fixed bound on the TLS handshake: --handshake-timeout bounds it instead, from the
        // socket's accept (basic_backend::admit).
        static const long timeout_socket_post_init = 0;
    };
    typedef websocketpp::transport::asio::endpoint<transport_config> transport_type;

    static const std::size_t connection_read_buffer_size = 512;
};

// RFC 6455 §5.2 header of an unmasked, final text (or binary) frame of `size` bytes. Server
// frames are not masked, so one framed buffer is valid on every connection.
std::string frame_header(std::size_t size, bool binary);

// basic_backend's helpers that need no websocketpp (defined once, in ws_server.cpp).
std::int64_t steady_now_ms();
// An IPv4 client of the dual-stack listener as IPv4, not ::ffff:1.2.3.4.
std::string plain_address(asio::ip::address address);
// Logs a warning unless the last one through `last` was less than 10 s ago.
void warn_at_most_every_10s(std::chrono::steady_clock::time_point& last, std::string_view message,
                            std::initializer_list<logging::field> fields);

}  // namespace ws_detail
}  // namespace mqttws
