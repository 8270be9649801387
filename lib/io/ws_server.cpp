// ws_server over plain TCP, the public ws_server class, and the helpers basic_backend shares
// with TLS that need no websocketpp.
#include <websocketpp/config/asio_no_tls.hpp>

#include "io/ws_server_impl.hpp"

namespace mqttws {

namespace ws_detail {

std::string frame_header(std::size_t size, bool binary) {
    std::string h;
    h += static_cast<char>(binary ? 0x82 : 0x81);  // FIN + opcode binary / text
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

std::int64_t steady_now_ms() {
    return std::chrono::duration_cast<std::chrono::milliseconds>(
               std::chrono::steady_clock::now().time_since_epoch())
        .count();
}

std::string plain_address(asio::ip::address address) {
    if (address.is_v6() && address.to_v6().is_v4_mapped())
        address = asio::ip::make_address_v4(asio::ip::v4_mapped, address.to_v6());
    return address.to_string();
}

void warn_at_most_every_10s(std::chrono::steady_clock::time_point& last, std::string_view message,
                            std::initializer_list<logging::field> fields) {
    const auto now = std::chrono::steady_clock::now();
    if (now - last < std::chrono::seconds(10)) return;
    last = now;
    logging::write(log_level::warn, message, fields);
}

}  // namespace ws_detail

std::unique_ptr<ws_server::backend> make_plain_backend(asio::io_context& io,
                                                       ws_server_options options,
                                                       ws_server::handlers h,
                                                       std::shared_ptr<connection_ledger> ledger) {
    using config = ws_detail::config<websocketpp::config::asio>;
    return std::make_unique<ws_detail::basic_backend<config>>(
        io, std::move(options), std::move(h), std::move(ledger), [](auto&) {},
        [](auto&) { return std::string(); },
        [] { return std::optional<std::string>("TLS is not configured"); });
}

ws_server::ws_server(asio::io_context& io, ws_server_options options, handlers h,
                     std::shared_ptr<connection_ledger> ledger) {
    if (!ledger) ledger = std::make_shared<connection_ledger>(options.admission);
    impl_ = options.tls.enabled()
                ? make_tls_backend(io, std::move(options), std::move(h), std::move(ledger))
                : make_plain_backend(io, std::move(options), std::move(h), std::move(ledger));
}

ws_server::~ws_server() = default;

void ws_server::listen() {
    impl_->listen();
}
void ws_server::stop_listening() {
    impl_->stop_listening();
}
listen_endpoint ws_server::local_endpoint() const {
    return impl_->local_endpoint();
}
void ws_server::send(connection_id to, const frame_ptr& frame, bool binary, std::string_view head) {
    impl_->send(to, frame, binary, head);
}
std::size_t ws_server::buffered_bytes(connection_id who) const {
    return impl_->buffered_bytes(who);
}
void ws_server::close(connection_id who, close_code code, std::string_view reason) {
    impl_->close(who, code, reason);
}
void ws_server::ping(connection_id who) {
    impl_->ping(who);
}
void ws_server::pong(connection_id who, std::string_view payload) {
    impl_->pong(who, payload);
}
void ws_server::pause_reading_from(connection_id who) {
    impl_->pause_reading_from(who);
}
void ws_server::resume_reading_from(connection_id who) {
    impl_->resume_reading_from(who);
}
void ws_server::resume_reading_all() {
    impl_->resume_reading_all();
}
void ws_server::pause_reading_for_app(connection_id who) {
    impl_->pause_reading_for_app(who);
}
void ws_server::resume_reading_for_app(connection_id who) {
    impl_->resume_reading_for_app(who);
}

std::optional<std::string> ws_server::reload_tls() {
    return impl_->reload_tls();
}
std::size_t ws_server::connection_count() const {
    return impl_->connection_count();
}
connection_counters ws_server::totals() const {
    return impl_->totals();
}

}  // namespace mqttws
