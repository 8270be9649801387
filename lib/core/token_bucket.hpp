// A token bucket: `burst` tokens, refilled at `rate` per second; each allowed event takes one.
// The one rate limiter of the bridge: publishes per client, failed authentications per address
// and per user, WebSocket handshakes per address.
//
// Time is the caller's (milliseconds of a monotonic clock), so the bucket is tested without
// sleeping. A bucket starts full.
//
// Thread safety: none; a plain value.
#pragma once

#include <algorithm>
#include <cstdint>

namespace mqttws {

class token_bucket {
  public:
    token_bucket() = default;
    token_bucket(double rate_per_second, double burst, std::int64_t now_ms)
        : rate_(rate_per_second), burst_(burst), tokens_(burst), at_ms_(now_ms) {}

    // Takes a token if there is one.
    bool take(std::int64_t now_ms) {
        refill(now_ms);
        if (tokens_ < 1.0) return false;
        tokens_ -= 1.0;
        return true;
    }
    // Takes a token even if there is none (down to zero): for counting failures after the fact.
    void spend(std::int64_t now_ms) {
        refill(now_ms);
        tokens_ = std::max(0.0, tokens_ - 1.0);
    }
    // Would take() succeed now?
    bool available(std::int64_t now_ms) {
        refill(now_ms);
        return tokens_ >= 1.0;
    }
    // Back to full: nothing to remember about this key any more.
    bool full(std::int64_t now_ms) {
        refill(now_ms);
        return tokens_ >= burst_;
    }

  private:
    void refill(std::int64_t now_ms) {
        if (now_ms > at_ms_) {
            tokens_ =
                std::min(burst_, tokens_ + rate_ * static_cast<double>(now_ms - at_ms_) / 1000.0);
        }
        at_ms_ = std::max(at_ms_, now_ms);
    }

    double rate_ = 0;
    double burst_ = 0;
    double tokens_ = 0;
    std::int64_t at_ms_ = 0;
};

}  // namespace mqttws
