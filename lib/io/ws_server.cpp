#include "io/ws_server.hpp"

#include <stdexcept>
#include <unordered_map>
#include <unordered_set>
#include <websocketpp/concurrency/none.hpp>
#include <websocketpp/config/asio_no_tls.hpp>
#include <websocketpp/server.hpp>

namespace mqttws {
namespace {

// websocketpp configuration: one thread owns every connection (no locks), and a small
// per-connection read buffer (the default 16 KiB is most of an idle connection's memory).
struct ws_config : websocketpp::config::asio {
    using type = ws_config;
    using base = websocketpp::config::asio;

    typedef websocketpp::concurrency::none concurrency_type;
    typedef websocketpp::log::basic<concurrency_type, websocketpp::log::elevel> elog_type;
    typedef websocketpp::log::basic<concurrency_type, websocketpp::log::alevel> alog_type;

    struct transport_config : public base::transport_config {
        typedef type::concurrency_type concurrency_type;
        typedef type::alog_type alog_type;
        typedef type::elog_type elog_type;
        typedef type::request_type request_type;
        typedef type::response_type response_type;
        typedef websocketpp::transport::asio::basic_socket::endpoint socket_type;
    };
    typedef websocketpp::transport::asio::endpoint<transport_config> transport_type;

    static const std::size_t connection_read_buffer_size = 4096;
};

using server_type = websocketpp::server<ws_config>;
using connection_ptr = server_type::connection_ptr;
using message_type = ws_config::message_type;

// RFC 6455 §5.2 header of an unmasked, final text frame of `size` bytes. Server frames are not
// masked, so one framed buffer is valid on every connection.
std::string text_frame_header(std::size_t size) {
    std::string h;
    h += static_cast<char>(0x81);  // FIN + opcode text
    if (size < 126) {
        h += static_cast<char>(size);
    } else if (size <= 0xFFFF) {
        h += static_cast<char>(126);
        h += static_cast<char>((size >> 8) & 0xFF);
        h += static_cast<char>(size & 0xFF);
    } else {
        h += static_cast<char>(127);
        for (int shift = 56; shift >= 0; shift -= 8)
            h += static_cast<char>((size >> shift) & 0xFF);
    }
    return h;
}

}  // namespace

struct ws_server::impl {
    impl(asio::io_context& io, ws_server_options o, handlers h)
        : options(std::move(o)), on(std::move(h)) {
        server.clear_access_channels(websocketpp::log::alevel::all);
        server.clear_error_channels(websocketpp::log::elevel::all);
        server.init_asio(&io);
        server.set_reuse_addr(true);
        server.set_listen_backlog(options.listen_backlog);
        server.set_max_message_size(options.max_frame_bytes);
        server.set_max_http_body_size(64 * 1024);

        server.set_tcp_post_init_handler([this](websocketpp::connection_hdl hdl) {
            std::error_code ec;
            server.get_con_from_hdl(hdl)->get_socket().set_option(asio::ip::tcp::no_delay(true),
                                                                  ec);
        });
        server.set_validate_handler([this](websocketpp::connection_hdl hdl) {
            // Only RFC 6455 clients: the shared pre-framed buffers are RFC 6455 frames.
            return server.get_con_from_hdl(hdl)->get_request_header("Sec-WebSocket-Version") ==
                   "13";
        });
        server.set_open_handler([this](websocketpp::connection_hdl hdl) { opened(hdl); });
        server.set_http_handler([this](websocketpp::connection_hdl hdl) { http(hdl); });
    }

    void opened(const websocketpp::connection_hdl& hdl) {
        connection_ptr con = server.get_con_from_hdl(hdl);
        const connection_id id = next_id++;
        connections.emplace(id, con);
        con->set_message_handler(
            [this, id](websocketpp::connection_hdl, server_type::message_ptr msg) {
                if (msg->get_opcode() == websocketpp::frame::opcode::text) {
                    on.on_text(id, msg->get_payload());
                } else {
                    close(id, close_code::unsupported_data, "Binary frames are not supported");
                }
            });
        con->set_close_handler([this, id](websocketpp::connection_hdl h) { closed(id, h); });
        con->set_fail_handler([this, id](websocketpp::connection_hdl h) { closed(id, h); });
        on.on_open(id, con->get_remote_endpoint());
    }

    void closed(connection_id id, const websocketpp::connection_hdl& hdl) {
        if (connections.erase(id) == 0) return;
        connection_ptr con = server.get_con_from_hdl(hdl);
        close_info info;
        // Closes the bridge started: ours (close()), and websocketpp's own for protocol
        // violations (too big, not UTF-8, bad framing), which only the server side sends here.
        const auto local = con->get_local_close_code();
        const bool protocol_close = local == websocketpp::close::status::protocol_error ||
                                    local == websocketpp::close::status::invalid_payload ||
                                    local == websocketpp::close::status::message_too_big;
        const bool we_closed = closed_by_bridge.erase(id) > 0 || protocol_close;
        info.by_peer = !we_closed;
        info.code = static_cast<std::uint16_t>(we_closed ? con->get_local_close_code()
                                                         : con->get_remote_close_code());
        info.reason = we_closed ? con->get_local_close_reason() : con->get_remote_close_reason();
        if (info.code == websocketpp::close::status::blank)
            info.code = websocketpp::close::status::abnormal_close;
        on.on_close(id, info);
    }

    void http(const websocketpp::connection_hdl& hdl) {
        connection_ptr con = server.get_con_from_hdl(hdl);
        const http_response r = on.on_http(con->get_resource());
        con->set_status(static_cast<websocketpp::http::status_code::value>(r.status));
        con->replace_header("Content-Type", r.content_type);
        con->replace_header("Cache-Control", "no-store");
        con->set_body(r.body);
    }

    // One websocketpp message per distinct frame; consecutive sends of the same frame (a
    // broadcast) reuse it. The cache holds the frame_ptr so its address cannot be reused.
    server_type::message_ptr prepared(const frame_ptr& frame) {
        if (frame == cached_frame) return cached_message;
        auto msg = std::make_shared<message_type>(message_type::con_msg_man_ptr(),
                                                  websocketpp::frame::opcode::text, 0);
        msg->set_header(text_frame_header(frame->size()));
        msg->set_payload(*frame);
        msg->set_prepared(true);
        cached_frame = frame;
        cached_message = msg;
        return msg;
    }

    void close(connection_id id, close_code code, std::string_view reason) {
        const auto it = connections.find(id);
        if (it == connections.end()) return;
        std::error_code ec;
        it->second->close(static_cast<websocketpp::close::status::value>(code), std::string(reason),
                          ec);
        if (!ec) closed_by_bridge.insert(id);
    }

    ws_server_options options;
    handlers on;
    server_type server;
    std::unordered_map<connection_id, connection_ptr> connections;
    std::unordered_set<connection_id> closed_by_bridge;  // closes we started, for the log
    connection_id next_id = 1;
    frame_ptr cached_frame;
    server_type::message_ptr cached_message;
};

ws_server::ws_server(asio::io_context& io, ws_server_options options, handlers h)
    : impl_(std::make_unique<impl>(io, std::move(options), std::move(h))) {}

ws_server::~ws_server() = default;

void ws_server::listen() {
    std::error_code ec;
    const auto address = asio::ip::make_address(impl_->options.bind_address, ec);
    if (ec)
        throw std::runtime_error("invalid --bind address '" + impl_->options.bind_address + "'");
    impl_->server.listen(asio::ip::tcp::endpoint(address, impl_->options.port), ec);
    if (ec) {
        throw std::runtime_error("cannot listen on " + impl_->options.bind_address + ":" +
                                 std::to_string(impl_->options.port) + ": " + ec.message());
    }
    impl_->server.start_accept(ec);
    if (ec) throw std::runtime_error("cannot accept connections: " + ec.message());
}

void ws_server::stop_listening() {
    std::error_code ec;
    if (impl_->server.is_listening()) impl_->server.stop_listening(ec);
}

std::uint16_t ws_server::local_port() const {
    std::error_code ec;
    return impl_->server.get_local_endpoint(ec).port();
}

void ws_server::send(connection_id to, const frame_ptr& frame) {
    const auto it = impl_->connections.find(to);
    if (it == impl_->connections.end()) return;
    it->second->send(impl_->prepared(frame));  // error (not open any more): nothing to do
}

void ws_server::close(connection_id who, close_code code, std::string_view reason) {
    impl_->close(who, code, reason);
}

std::size_t ws_server::connection_count() const {
    return impl_->connections.size();
}

}  // namespace mqttws
