// What the engine needs from the machine: time, randomness, and how much each connection still
// has to write. Injected so that every time-dependent rule is tested with a fake clock instead of
// sleeps, and every flow-control rule with a fake socket.
// Thread safety: implementations are called from the engine's thread only.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

#include "core/actions.hpp"

namespace mqttws {

class platform {
  public:
    virtual ~platform() = default;
    // Monotonic milliseconds (for timeouts and windows); never goes back.
    virtual std::int64_t steady_ms() const = 0;
    // Wall-clock milliseconds since the Unix epoch (for `timestamp` fields).
    virtual std::int64_t wall_ms() const = 0;
    // `n` unpredictable bytes as lowercase hex (2n characters), for ids and session tokens.
    virtual std::string random_hex(std::size_t n) = 0;
    // Bytes of the frames already handed to connection `id` (by carrying out earlier actions)
    // that its socket has not taken yet; 0 for an unknown connection. The engine asks this at
    // the start of an event, when every earlier action has been carried out.
    virtual std::size_t buffered_bytes(connection_id id) const = 0;
};

}  // namespace mqttws
