#include "core/frame_signature.hpp"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include <algorithm>
#include <climits>

#include "core/base64.hpp"

namespace mqttws {

std::variant<device_keys, std::vector<line_error>> device_keys::parse(std::string_view text) {
    device_keys out;
    std::vector<line_error> errors;
    config_text::for_each_line(text, [&](std::size_t number, std::string_view raw) {
        const std::string_view line = config_text::trim(raw);
        if (line.empty() || line.front() == '#') return;
        std::string_view rest;
        const std::string_view id = config_text::first_word(line, rest);
        std::string_view after_secret;
        const std::string_view secret = config_text::first_word(rest, after_secret);
        std::string_view extra;
        const std::string_view policy = config_text::first_word(after_secret, extra);
        if (secret.empty()) {
            errors.push_back({number, "expected '<device id> <secret> [required|optional]'"});
        } else if (secret.size() < 16) {
            errors.push_back(
                {number, "the secret of '" + std::string(id) + "' is shorter than 16 characters"});
        } else if (!policy.empty() && policy != "required" && policy != "optional") {
            errors.push_back({number, "the policy must be 'required' or 'optional', not '" +
                                          std::string(policy) + "'"});
        } else if (!extra.empty()) {
            errors.push_back({number, "unexpected text after the policy"});
        } else if (!out.keys_
                        .emplace(std::string(id), key{std::string(secret), policy != "optional"})
                        .second) {
            errors.push_back({number, "'" + std::string(id) + "' is listed twice"});
        }
    });
    if (!errors.empty()) return errors;
    return out;
}

const device_keys::key* device_keys::find(const std::string& device_id) const {
    const auto it = keys_.find(device_id);
    return it == keys_.end() ? nullptr : &it->second;
}

std::optional<frame_signature> split_signature(std::string_view frame) {
    constexpr std::string_view marker = ",\"sig\":\"";
    while (!frame.empty() && config_text::is_blank(frame.back()))
        frame.remove_suffix(1);
    if (frame.size() < marker.size() + 3 || frame.substr(frame.size() - 2) != "\"}")
        return std::nullopt;
    const std::size_t at = frame.rfind(marker);
    if (at == std::string_view::npos) return std::nullopt;
    const std::size_t start = at + marker.size();
    const std::string_view value = frame.substr(start, frame.size() - 2 - start);
    const bool base64url_only =
        !value.empty() && std::all_of(value.begin(), value.end(), [](char c) {
            return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
                   c == '-' || c == '_';
        });
    if (!base64url_only) return std::nullopt;
    frame_signature out;
    out.signed_bytes.reserve(at + 1);
    out.signed_bytes.append(frame.substr(0, at));
    out.signed_bytes += '}';
    out.signature = std::string(value);
    return out;
}

bool signature_valid(std::string_view secret, const frame_signature& s) {
    const std::optional<std::string> given = base64url::decode(s.signature);
    if (!given || given->size() != 32 || secret.size() > INT_MAX) return false;
    unsigned char mac[EVP_MAX_MD_SIZE];
    unsigned int len = 0;
    if (HMAC(EVP_sha256(), secret.data(), static_cast<int>(secret.size()),
             reinterpret_cast<const unsigned char*>(s.signed_bytes.data()), s.signed_bytes.size(),
             mac, &len) == nullptr ||
        len != 32) {
        return false;
    }
    return CRYPTO_memcmp(mac, given->data(), 32) == 0;
}

bool valid_nonce(std::string_view nonce) {
    return nonce.size() >= 8 && nonce.size() <= 64 &&
           std::all_of(nonce.begin(), nonce.end(), [](char c) {
               return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
                      c == '-' || c == '_';
           });
}

bool replay_guard::fresh(const std::string& device, std::int64_t ts, const std::string& nonce,
                         std::int64_t now_ms) {
    if (ts < now_ms - window_ms_ || ts > now_ms + window_ms_) return false;
    seen& s = devices_[device];
    if (ts <= s.floor_ts || s.nonces.count(nonce) > 0) return false;
    while (!s.order.empty() && s.order.front().first < now_ms - window_ms_) {
        s.nonces.erase(s.order.front().second);
        s.order.pop_front();
    }
    if (s.order.size() >= max_nonces_) forget_oldest(s);
    s.nonces.insert(nonce);
    s.order.push_back({ts, nonce});
    return true;
}

void replay_guard::forget_oldest(seen& s) {
    // Frames in the window are remembered in arrival order, not ts order: the floor is the
    // newest ts forgotten so far, so that no forgotten nonce can come back.
    s.floor_ts = std::max(s.floor_ts, s.order.front().first);
    s.nonces.erase(s.order.front().second);
    s.order.pop_front();
}

void replay_guard::expire(std::int64_t now_ms) {
    for (auto it = devices_.begin(); it != devices_.end();) {
        seen& s = it->second;
        while (!s.order.empty() && s.order.front().first < now_ms - window_ms_) {
            s.nonces.erase(s.order.front().second);
            s.order.pop_front();
        }
        // Nothing left to remember, and its floor outside the window (where the window check
        // refuses anyway): drop the device.
        it = s.order.empty() && s.floor_ts < now_ms - window_ms_ ? devices_.erase(it)
                                                                 : std::next(it);
    }
}

std::size_t replay_guard::remembered() const {
    std::size_t n = 0;
    for (const auto& [device, s] : devices_)
        n += s.order.size();
    return n;
}

}  // namespace mqttws
