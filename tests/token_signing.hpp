// Test helpers that sign with HMAC-SHA256 through OpenSSL directly (not through the code under
// test): JWTs signed with HS256 for the engine's token tests, and the device signatures of
// core/frame_signature.
// Thread safety: pure functions.
#pragma once

#include <openssl/evp.h>
#include <openssl/hmac.h>

#include <string>
#include <string_view>

#include "core/base64.hpp"
#include "core/jwt.hpp"

namespace mqttws::test {

inline std::string hmac_sha256(std::string_view key, std::string_view input) {
    unsigned char mac[EVP_MAX_MD_SIZE];
    unsigned int len = 0;
    if (HMAC(EVP_sha256(), key.data(), static_cast<int>(key.size()),
             reinterpret_cast<const unsigned char*>(input.data()), input.size(), mac,
             &len) == nullptr) {
        return {};
    }
    return std::string(reinterpret_cast<const char*>(mac), len);
}

// A compact JWS with alg HS256 over `payload_json`.
inline std::string hs256_token(std::string_view secret, std::string_view payload_json,
                               std::string_view header_json = R"({"alg":"HS256","typ":"JWT"})") {
    const std::string input =
        base64url::encode(header_json) + "." + base64url::encode(payload_json);
    return input + "." + base64url::encode(hmac_sha256(secret, input));
}

}  // namespace mqttws::test
