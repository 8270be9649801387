// Verification of JSON Web Tokens (RFC 7519) given in `auth` frames: compact JWS
// (`header.payload.signature`, RFC 7515), signed with HS256, RS256 or ES256.
//
// The verifier is configured with at most one key per algorithm from the command line, and any
// number from a JSON Web Key Set, chosen by the token's `kid` (so keys rotate: the set holds the
// old and the new key while tokens of both are in use). A key only ever verifies its own
// algorithm: a token's `alg` must name a configured one, so an RS256 public key is never used as
// an HMAC secret (algorithm confusion), and `none` is never accepted. Everything is
// strict: base64url without padding and with zero trailing bits, a header and payload that are
// JSON objects without repeated member names (RFC 7515 §4), no `crit` extensions, the signature
// checked before any claim is looked at. ES256 signatures are the raw 64-byte r||s of RFC 7518
// §3.4, converted to DER for OpenSSL.
//
// Claims: `sub` (required, non-empty string) is the client id; `exp` and `nbf` (NumericDate
// numbers) are checked against the caller's clock with a leeway; `exp` is required unless
// configured otherwise. Optional: `username` (string), `jti` (string, names the token for
// revocation) and `acl`, EMQX's JWT ACL claim
// `{"pub":[…],"sub":[…],"all":[…]}` ("all" counts for both) — returned as an `acl_grant` that
// narrows what the ACL file allows (see acl.hpp). Other claims are ignored.
//
// The JSON is parsed here with RapidJSON rather than in codec: a token is opaque to the wire
// protocol, and its JSON has nothing to do with the frame format.
//
// Thread safety: configure on one thread, then `verify()` (const) may be called from several
// threads at once; OpenSSL's public keys are safe to share for verification.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <variant>

#include "core/acl.hpp"

namespace mqttws {

enum class jwt_alg { hs256, rs256, es256 };

struct jwt_claims {
    std::string subject;                     // `sub`: the client id
    std::optional<std::string> username;     // `username`
    std::optional<std::string> token_id;     // `jti`: names the token, e.g. to revoke it
    std::optional<std::int64_t> expires_at;  // `exp`, seconds since the Unix epoch (rounded down)
    std::optional<std::int64_t> not_before;  // `nbf`
    std::optional<acl_grant> grant;          // `acl`; absent = no narrowing
};

enum class jwt_errc {
    malformed,         // not a compact JWS, bad base64url, header/payload not a JSON object
    alg_not_accepted,  // `none`, or an algorithm with no configured key
    bad_signature,
    expired,
    not_yet_valid,
    bad_claims,  // a claim missing or of the wrong type
};
std::string_view to_string(jwt_errc e) noexcept;

struct jwt_failure {
    jwt_errc code = jwt_errc::malformed;
    std::string reason;  // one sentence, e.g. "token expired 120 s ago"
};

struct jwt_options {
    bool require_exp = true;              // refuse tokens that never expire
    std::size_t max_token_bytes = 16384;  // longer tokens are refused before decoding
    std::size_t max_json_depth = 16;      // nesting in the header and payload
};

class jwt_verifier {
  public:
    explicit jwt_verifier(jwt_options options = {});
    ~jwt_verifier();
    jwt_verifier(jwt_verifier&&) noexcept;
    jwt_verifier& operator=(jwt_verifier&&) noexcept;
    jwt_verifier(const jwt_verifier&) = delete;
    jwt_verifier& operator=(const jwt_verifier&) = delete;

    // Each returns nullopt on success, else why the key was refused (one sentence).
    // HS256: the shared secret's bytes; at least 32 of them (RFC 7518 §3.2).
    std::optional<std::string> accept_hs256(std::string_view secret);
    // RS256: an RSA public key of at least 2048 bits, PEM "BEGIN PUBLIC KEY".
    std::optional<std::string> accept_rs256(std::string_view public_key_pem);
    // ES256: an EC public key on P-256, PEM "BEGIN PUBLIC KEY".
    std::optional<std::string> accept_es256(std::string_view public_key_pem);
    // The keys of a JSON Web Key Set (RFC 7517, `{"keys":[…]}`): RSA keys verify RS256, EC
    // P-256 keys ES256, `oct` keys HS256 (jwks.cpp). A token naming a `kid` is verified with that
    // key only; one without is verified with the one key of its algorithm. Keys for encryption
    // (`"use":"enc"`) are skipped; a malformed or too weak key refuses the whole set.
    std::optional<std::string> accept_jwks(std::string_view jwks_json);
    std::size_t key_set_size() const noexcept;

    bool accepts(jwt_alg alg) const noexcept;

    // `now_seconds`: the caller's clock (Unix seconds). `leeway_seconds` forgives clock skew
    // both ways for `exp` and `nbf`.
    std::variant<jwt_claims, jwt_failure> verify(std::string_view token, std::int64_t now_seconds,
                                                 std::int64_t leeway_seconds = 30) const;

  private:
    struct keys;
    jwt_options options_;
    std::unique_ptr<keys> keys_;
};

}  // namespace mqttws
