// Base64 (RFC 4648), one codec in two flavours:
// - `standard`: the +/ alphabet, padded with '=' — binary payloads in JSON frames;
// - `url`: the -_ alphabet, without padding — JWTs (RFC 7515) and signed device frames.
// Decoding is strict: only the flavour's alphabet, padding exactly where it belongs (none for
// `url`), no whitespace, and the unused bits of the last character zero, so that every byte
// string has exactly one encoding ("Zg==" decodes, "Zh==" does not).
// Thread safety: pure functions; safe from any thread.
#pragma once

#include <optional>
#include <string>
#include <string_view>

namespace mqttws::base64 {

struct flavour {
    bool url_alphabet = false;  // '-' and '_' instead of '+' and '/'
    bool padded = true;         // '=' up to a multiple of 4 characters
};
inline constexpr flavour standard{false, true};
inline constexpr flavour url{true, false};

std::string encode(std::string_view bytes, flavour f = standard);
void encode_append(std::string_view bytes, std::string& out, flavour f = standard);
std::optional<std::string> decode(std::string_view text, flavour f = standard);

}  // namespace mqttws::base64

// base64url without padding, as JWS uses it: the `url` flavour.
namespace mqttws::base64url {

inline std::string encode(std::string_view bytes) {
    return base64::encode(bytes, base64::url);
}
inline std::optional<std::string> decode(std::string_view text) {
    return base64::decode(text, base64::url);
}

}  // namespace mqttws::base64url
