// The platform of an engine shard (engine_shards.hpp).
//
// Thread safety: the shard's thread; the counters of connections another thread serves are
// atomics that thread writes.
#pragma once

#include <atomic>
#include <memory>
#include <unordered_map>

#include "core/platform.hpp"
#include "io/system_platform.hpp"

namespace mqttws {

// A shard's platform: the real clocks and random source, and the unwritten bytes of each
// connection of its sessions, read from its own listener, or for a connection another thread
// serves (a resume that landed there) from what that thread last saw.
class shard_platform final : public platform {
  public:
    using foreign_bytes =
        std::unordered_map<connection_id, std::shared_ptr<std::atomic<std::size_t>>>;
    shard_platform(const foreign_bytes& foreign) : foreign_(foreign) {}
    void set_server(const client_io* server) { system_.set_server(server); }
    std::size_t buffered_bytes(connection_id id) const override {
        const auto it = foreign_.find(id);
        if (it != foreign_.end()) return it->second->load(std::memory_order_relaxed);
        return system_.buffered_bytes(id);
    }
    std::int64_t steady_ms() const override { return system_.steady_ms(); }
    std::int64_t wall_ms() const override { return system_.wall_ms(); }
    std::string random_hex(std::size_t n) override { return system_.random_hex(n); }

  private:
    system_platform system_;
    const foreign_bytes& foreign_;
};

}  // namespace mqttws
