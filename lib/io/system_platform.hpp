// The platform of the running bridge: the real clocks, a cryptographic random source, and the
// WebSocket side's count of the bytes it still has to write per connection.
// Thread safety: the thread of the engine it serves.
#pragma once

#include <openssl/rand.h>

#include <chrono>
#include <random>
#include <string>

#include "core/platform.hpp"
#include "io/ws_server.hpp"

namespace mqttws {

// The real clock, a cryptographic random source (session tokens must not be guessable), and the
// WebSocket side's count of bytes it still has to write per connection.
class system_platform final : public platform {
  public:
    void set_server(const client_io* server) { server_ = server; }
    std::size_t buffered_bytes(connection_id id) const override {
        return server_ != nullptr ? server_->buffered_bytes(id) : 0;
    }
    std::int64_t steady_ms() const override {
        return std::chrono::duration_cast<std::chrono::milliseconds>(
                   std::chrono::steady_clock::now().time_since_epoch())
            .count();
    }
    std::int64_t wall_ms() const override {
        return std::chrono::duration_cast<std::chrono::milliseconds>(
                   std::chrono::system_clock::now().time_since_epoch())
            .count();
    }
    std::string random_hex(std::size_t n) override {
        std::string bytes(n, '\0');
        if (RAND_bytes(reinterpret_cast<unsigned char*>(bytes.data()), static_cast<int>(n)) != 1) {
            std::random_device rd;  // OpenSSL's generator failed; still unpredictable enough
            for (auto& b : bytes)
                b = static_cast<char>(rd());
        }
        static constexpr char hex[] = "0123456789abcdef";
        std::string out;
        out.reserve(2 * n);
        for (const char b : bytes) {
            out += hex[(static_cast<unsigned char>(b) >> 4) & 15];
            out += hex[static_cast<unsigned char>(b) & 15];
        }
        return out;
    }

  private:
    const client_io* server_ = nullptr;
};

}  // namespace mqttws
