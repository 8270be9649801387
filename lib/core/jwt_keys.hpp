// Internal to jwt.cpp and jwks.cpp: the keys a jwt_verifier holds, and the checks a key must
// pass before it is accepted (the same for a PEM file, a secret and a JSON Web Key).
// Thread safety: as jwt_verifier.
#pragma once

#include <openssl/evp.h>

#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/jwt.hpp"

namespace mqttws {

struct pkey_deleter {
    void operator()(EVP_PKEY* p) const noexcept { EVP_PKEY_free(p); }
};
using pkey_ptr = std::unique_ptr<EVP_PKEY, pkey_deleter>;

// One key of a JSON Web Key Set: it verifies tokens of `alg` whose header names its `kid`.
struct named_key {
    std::string kid;  // may be empty (then it is chosen only when it is the one key of its alg)
    jwt_alg alg = jwt_alg::hs256;
    std::string secret;  // HS256
    pkey_ptr pkey;       // RS256, ES256
};

struct jwt_verifier::keys {
    // From --jwt-secret / --jwt-public-key: at most one per algorithm, no kid.
    std::optional<std::string> hs256_secret;
    pkey_ptr rs256;
    pkey_ptr es256;
    // From a JWKS file (--jwt-jwks), chosen by the token's kid.
    std::vector<named_key> set;
};

// nullopt when the key may verify `alg` tokens, else why not (one sentence).
std::optional<std::string> check_hs256_secret(std::string_view secret);
std::optional<std::string> check_rs256_key(EVP_PKEY* key);
std::optional<std::string> check_es256_key(EVP_PKEY* key);

}  // namespace mqttws
