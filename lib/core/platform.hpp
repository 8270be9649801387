// What the engine needs from the machine: time and randomness. Injected so that every
// time-dependent rule is tested with a fake clock instead of sleeps.
// Thread safety: implementations are called from the engine's thread only.
#pragma once

#include <cstdint>
#include <string>

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
};

}  // namespace mqttws
