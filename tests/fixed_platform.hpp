// A platform for driving the engine without a real clock or random source: time moves only when
// the caller moves it, "random" ids count up (000…001, 000…002, …) and every socket has taken
// everything. Shared by the fuzz targets and bench/engine (the unit tests' fake_platform adds
// per-connection socket backlogs on top of `counter_hex`).
// Thread safety: none.
#pragma once

#include <cstdint>
#include <string>

#include "core/platform.hpp"

namespace mqttws::test {

// 2n lowercase hex digits of `v`: "000000000001" for n = 6, v = 1.
inline std::string counter_hex(std::size_t n, std::uint64_t v) {
    std::string out(2 * n, '0');
    for (std::size_t i = out.size(); i > 0 && v != 0; --i, v >>= 4)
        out[i - 1] = "0123456789abcdef"[v & 15];
    return out;
}

class fixed_platform final : public platform {
  public:
    std::int64_t steady_ms() const override { return now; }
    std::int64_t wall_ms() const override { return 1'700'000'000'000 + now; }
    std::string random_hex(std::size_t n) override { return counter_hex(n, ++calls); }
    std::size_t buffered_bytes(connection_id) const override { return 0; }

    std::int64_t now = 1'000'000;
    std::uint64_t calls = 0;
};

}  // namespace mqttws::test
