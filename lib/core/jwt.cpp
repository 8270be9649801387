#include "core/jwt.hpp"

#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/crypto.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/pem.h>
#include <rapidjson/document.h>

#include <algorithm>
#include <array>
#include <cctype>
#include <climits>
#include <cmath>
#include <cstring>
#include <vector>

#include "core/base64.hpp"
#include "core/jwt_keys.hpp"
#include "core/text.hpp"
#include "core/topic.hpp"

namespace mqttws {

// ---- keys ----

namespace {

// Reads a PEM public key; clears OpenSSL's error queue either way.
pkey_ptr read_public_key(std::string_view pem) {
    if (pem.size() > static_cast<std::size_t>(INT_MAX)) return nullptr;
    const std::unique_ptr<BIO, decltype(&BIO_free)> bio(
        BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())), &BIO_free);
    pkey_ptr key;
    if (bio) key.reset(PEM_read_bio_PUBKEY(bio.get(), nullptr, nullptr, nullptr));
    ERR_clear_error();
    return key;
}

}  // namespace

jwt_verifier::jwt_verifier(jwt_options options)
    : options_(options), keys_(std::make_unique<keys>()) {}
jwt_verifier::~jwt_verifier() = default;
jwt_verifier::jwt_verifier(jwt_verifier&&) noexcept = default;
jwt_verifier& jwt_verifier::operator=(jwt_verifier&&) noexcept = default;

std::optional<std::string> check_hs256_secret(std::string_view secret) {
    if (secret.size() >= 32) return std::nullopt;
    return "an HS256 secret must be at least 32 bytes (RFC 7518 section 3.2); this one has " +
           std::to_string(secret.size());
}

std::optional<std::string> check_rs256_key(EVP_PKEY* key) {
    if (EVP_PKEY_get_base_id(key) != EVP_PKEY_RSA) {
        return std::string("the RS256 key is not an RSA key");
    }
    if (EVP_PKEY_get_bits(key) < 2048) {
        return "the RS256 key has " + std::to_string(EVP_PKEY_get_bits(key)) +
               " bits; at least 2048 are required";
    }
    return std::nullopt;
}

std::optional<std::string> check_es256_key(EVP_PKEY* key) {
    char group[64] = {};
    std::size_t group_len = 0;
    if (EVP_PKEY_get_base_id(key) != EVP_PKEY_EC ||
        EVP_PKEY_get_group_name(key, group, sizeof group, &group_len) != 1 ||
        std::string_view(group, group_len) != "prime256v1") {
        ERR_clear_error();
        return std::string("the ES256 key is not an EC key on the P-256 curve");
    }
    return std::nullopt;
}

std::optional<std::string> jwt_verifier::accept_hs256(std::string_view secret) {
    if (auto problem = check_hs256_secret(secret)) return problem;
    keys_->hs256_secret = std::string(secret);
    return std::nullopt;
}

std::optional<std::string> jwt_verifier::accept_rs256(std::string_view public_key_pem) {
    pkey_ptr key = read_public_key(public_key_pem);
    if (!key) return std::string("the RS256 key is not a PEM public key (BEGIN PUBLIC KEY)");
    if (auto problem = check_rs256_key(key.get())) return problem;
    keys_->rs256 = std::move(key);
    return std::nullopt;
}

std::optional<std::string> jwt_verifier::accept_es256(std::string_view public_key_pem) {
    pkey_ptr key = read_public_key(public_key_pem);
    if (!key) return std::string("the ES256 key is not a PEM public key (BEGIN PUBLIC KEY)");
    if (auto problem = check_es256_key(key.get())) return problem;
    keys_->es256 = std::move(key);
    return std::nullopt;
}

bool jwt_verifier::accepts(jwt_alg alg) const noexcept {
    const bool flag_key = alg == jwt_alg::hs256   ? keys_->hs256_secret.has_value()
                          : alg == jwt_alg::rs256 ? keys_->rs256 != nullptr
                                                  : keys_->es256 != nullptr;
    return flag_key || std::any_of(keys_->set.begin(), keys_->set.end(),
                                   [alg](const named_key& k) { return k.alg == alg; });
}

std::string_view to_string(jwt_errc e) noexcept {
    switch (e) {
        case jwt_errc::malformed:
            return "malformed";
        case jwt_errc::alg_not_accepted:
            return "alg_not_accepted";
        case jwt_errc::bad_signature:
            return "bad_signature";
        case jwt_errc::expired:
            return "expired";
        case jwt_errc::not_yet_valid:
            return "not_yet_valid";
        case jwt_errc::bad_claims:
            return "bad_claims";
    }
    return "unknown";
}

// ---- verification ----

namespace {

namespace rj = rapidjson;
using pool_allocator = rj::MemoryPoolAllocator<rj::CrtAllocator>;
using document = rj::GenericDocument<rj::UTF8<>, pool_allocator, rj::CrtAllocator>;
using value = document::ValueType;

jwt_failure fail(jwt_errc code, std::string reason) {
    return jwt_failure{code, std::move(reason)};
}

std::string quote(std::string_view s) {
    constexpr std::size_t max_bytes = 64;
    std::string out = "'";
    for (const char c : s.substr(0, max_bytes)) {
        const auto u = static_cast<unsigned char>(c);
        out += (u < 0x20 || u >= 0x7F) ? '?' : c;
    }
    if (s.size() > max_bytes) out += "...";
    out += '\'';
    return out;
}

std::string_view view(const value& v) {
    return {v.GetString(), v.GetStringLength()};
}

const value* find(const value& obj, const char* name) {
    const auto it = obj.FindMember(name);
    return it == obj.MemberEnd() ? nullptr : &it->value;
}

// Decodes and parses one JSON part; `what` is "header" or "payload".
std::optional<jwt_failure> parse_part(std::string_view encoded, const char* what,
                                      const jwt_options& options, document& doc) {
    const std::optional<std::string> json = base64url::decode(encoded);
    if (!json) return fail(jwt_errc::malformed, std::string("token ") + what + " is not base64url");
    if (json_nesting_exceeds(*json, options.max_json_depth)) {
        return fail(jwt_errc::malformed, std::string("token ") + what + " is nested too deeply");
    }
    constexpr unsigned flags = rj::kParseValidateEncodingFlag | rj::kParseIterativeFlag;
    doc.Parse<flags>(json->data(), json->size());
    if (doc.HasParseError() || !doc.IsObject()) {
        return fail(jwt_errc::malformed, std::string("token ") + what + " is not a JSON object");
    }
    // RFC 7515 §4: reject repeated member names rather than guess which one counts.
    std::vector<std::string_view> names;
    names.reserve(doc.MemberCount());
    for (auto it = doc.MemberBegin(); it != doc.MemberEnd(); ++it)
        names.push_back(view(it->name));
    std::sort(names.begin(), names.end());
    const auto dup = std::adjacent_find(names.begin(), names.end());
    if (dup != names.end()) {
        return fail(jwt_errc::malformed,
                    std::string("token ") + what + " repeats the member " + quote(*dup));
    }
    return std::nullopt;
}

bool hs256_verifies(const std::string& secret, std::string_view signing_input,
                    std::string_view signature) {
    std::array<unsigned char, EVP_MAX_MD_SIZE> mac{};
    unsigned int mac_len = 0;
    if (signing_input.size() > static_cast<std::size_t>(INT_MAX)) return false;
    if (HMAC(EVP_sha256(), secret.data(), static_cast<int>(secret.size()),
             reinterpret_cast<const unsigned char*>(signing_input.data()), signing_input.size(),
             mac.data(), &mac_len) == nullptr) {
        ERR_clear_error();
        return false;
    }
    return signature.size() == mac_len && CRYPTO_memcmp(mac.data(), signature.data(), mac_len) == 0;
}

bool digest_verifies(EVP_PKEY* key, std::string_view signing_input, const unsigned char* signature,
                     std::size_t signature_len) {
    const std::unique_ptr<EVP_MD_CTX, decltype(&EVP_MD_CTX_free)> ctx(EVP_MD_CTX_new(),
                                                                      &EVP_MD_CTX_free);
    const bool ok = ctx &&
                    EVP_DigestVerifyInit(ctx.get(), nullptr, EVP_sha256(), nullptr, key) == 1 &&
                    EVP_DigestVerify(ctx.get(), signature, signature_len,
                                     reinterpret_cast<const unsigned char*>(signing_input.data()),
                                     signing_input.size()) == 1;
    ERR_clear_error();
    return ok;
}

bool rs256_verifies(EVP_PKEY* key, std::string_view signing_input, std::string_view signature) {
    // RFC 7518 §3.3 / RFC 8017: the signature is exactly as long as the modulus.
    if (signature.size() != static_cast<std::size_t>(EVP_PKEY_get_size(key))) return false;
    return digest_verifies(key, signing_input,
                           reinterpret_cast<const unsigned char*>(signature.data()),
                           signature.size());
}

bool es256_verifies(EVP_PKEY* key, std::string_view signing_input, std::string_view signature) {
    // RFC 7518 §3.4: R and S as 32-byte big-endian integers, concatenated. OpenSSL wants DER.
    if (signature.size() != 64) return false;
    const auto* raw = reinterpret_cast<const unsigned char*>(signature.data());
    const std::unique_ptr<ECDSA_SIG, decltype(&ECDSA_SIG_free)> sig(ECDSA_SIG_new(),
                                                                    &ECDSA_SIG_free);
    BIGNUM* r = BN_bin2bn(raw, 32, nullptr);
    BIGNUM* s = BN_bin2bn(raw + 32, 32, nullptr);
    if (!sig || r == nullptr || s == nullptr || ECDSA_SIG_set0(sig.get(), r, s) != 1) {
        BN_free(r);
        BN_free(s);
        ERR_clear_error();
        return false;
    }
    unsigned char* der = nullptr;
    const int der_len = i2d_ECDSA_SIG(sig.get(), &der);
    if (der_len <= 0) {
        ERR_clear_error();
        return false;
    }
    const bool ok = digest_verifies(key, signing_input, der, static_cast<std::size_t>(der_len));
    OPENSSL_free(der);
    return ok;
}

// Reads a NumericDate claim. nullopt = absent; failure = wrong type or absurd.
std::variant<std::optional<double>, jwt_failure> read_time(const value& payload, const char* name) {
    const value* v = find(payload, name);
    if (v == nullptr) return std::optional<double>{};
    // RFC 7519 §2: NumericDate; 1e12 s is ~31700 years, far beyond any honest token.
    if (!v->IsNumber() || !std::isfinite(v->GetDouble()) || std::fabs(v->GetDouble()) > 1e12) {
        return fail(jwt_errc::bad_claims,
                    std::string("'") + name + "' must be a number of seconds");
    }
    return std::optional<double>{v->GetDouble()};
}

std::optional<jwt_failure> read_filter_list(const value& acl, const char* name,
                                            std::vector<std::string>& out) {
    const value* list = find(acl, name);
    if (list == nullptr) return std::nullopt;
    if (!list->IsArray()) {
        return fail(jwt_errc::bad_claims,
                    std::string("'acl.") + name + "' must be an array of topic filters");
    }
    for (const value& entry : list->GetArray()) {
        if (!entry.IsString()) {
            return fail(jwt_errc::bad_claims,
                        std::string("'acl.") + name + "' must be an array of topic filters");
        }
        const std::string_view filter = view(entry);
        if (const auto problem = topic::check_filter(filter)) {
            return fail(jwt_errc::bad_claims,
                        std::string("'acl.") + name + "' entry " + quote(filter) +
                            " is not a valid topic filter: " + problem->message);
        }
        if (topic::split_shared(filter)) {
            return fail(jwt_errc::bad_claims, std::string("'acl.") + name + "' entry " +
                                                  quote(filter) +
                                                  " names a shared subscription; grant its "
                                                  "inner filter instead");
        }
        out.emplace_back(filter);
    }
    return std::nullopt;
}

std::optional<jwt_failure> read_grant(const value& payload, std::optional<acl_grant>& out) {
    const value* acl = find(payload, "acl");
    if (acl == nullptr) return std::nullopt;
    if (acl->IsArray()) {
        return fail(jwt_errc::bad_claims,
                    "'acl' in EMQX's rule-list format is not supported; use "
                    "{\"pub\":[...],\"sub\":[...]}");
    }
    if (!acl->IsObject()) {
        return fail(jwt_errc::bad_claims, "'acl' must be an object with 'pub'/'sub' filter lists");
    }
    // `{"acl":{}}` grants nothing, like empty lists: the token holder may do nothing.
    acl_grant grant;
    if (auto f = read_filter_list(*acl, "pub", grant.pub)) return f;
    if (auto f = read_filter_list(*acl, "sub", grant.sub)) return f;
    std::vector<std::string> all;
    if (auto f = read_filter_list(*acl, "all", all)) return f;
    grant.pub.insert(grant.pub.end(), all.begin(), all.end());
    grant.sub.insert(grant.sub.end(), all.begin(), all.end());
    out = std::move(grant);
    return std::nullopt;
}

}  // namespace

std::variant<jwt_claims, jwt_failure> jwt_verifier::verify(std::string_view token,
                                                           std::int64_t now_seconds,
                                                           std::int64_t leeway_seconds) const {
    if (token.size() > options_.max_token_bytes) {
        return fail(jwt_errc::malformed,
                    "token is longer than " + std::to_string(options_.max_token_bytes) + " bytes");
    }
    const std::size_t dot1 = token.find('.');
    const std::size_t dot2 = dot1 == std::string_view::npos ? dot1 : token.find('.', dot1 + 1);
    if (dot2 == std::string_view::npos || token.find('.', dot2 + 1) != std::string_view::npos) {
        return fail(jwt_errc::malformed,
                    "token is not three base64url parts separated by '.' (a compact JWS)");
    }
    const std::string_view header_b64 = token.substr(0, dot1);
    const std::string_view payload_b64 = token.substr(dot1 + 1, dot2 - dot1 - 1);
    const std::string_view signature_b64 = token.substr(dot2 + 1);
    const std::string_view signing_input = token.substr(0, dot2);

    // 1. Header: which algorithm.
    document header;
    if (auto f = parse_part(header_b64, "header", options_, header)) return *f;
    const value* alg_value = find(header, "alg");
    if (alg_value == nullptr || !alg_value->IsString()) {
        return fail(jwt_errc::malformed, "token header has no 'alg' string");
    }
    const std::string_view alg = view(*alg_value);
    std::string lower(alg);
    std::transform(lower.begin(), lower.end(), lower.begin(),
                   [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
    if (lower == "none") {
        return fail(jwt_errc::alg_not_accepted, "alg " + quote(alg) + " is not accepted");
    }
    std::optional<jwt_alg> which;
    if (alg == "HS256") which = jwt_alg::hs256;
    if (alg == "RS256") which = jwt_alg::rs256;
    if (alg == "ES256") which = jwt_alg::es256;
    if (!which || !accepts(*which)) {
        std::string accepted;
        for (const auto& [a, name] :
             {std::pair{jwt_alg::hs256, "HS256"}, std::pair{jwt_alg::rs256, "RS256"},
              std::pair{jwt_alg::es256, "ES256"}}) {
            if (!accepts(a)) continue;
            if (!accepted.empty()) accepted += ", ";
            accepted += name;
        }
        return fail(jwt_errc::alg_not_accepted,
                    "alg " + quote(alg) + " is not accepted (accepted: " +
                        (accepted.empty() ? std::string("none configured") : accepted) + ")");
    }
    if (find(header, "crit") != nullptr) {
        return fail(jwt_errc::malformed, "token header has 'crit' extensions, none are supported");
    }
    const value* kid_value = find(header, "kid");
    if (kid_value != nullptr && !kid_value->IsString()) {
        return fail(jwt_errc::malformed, "token header's 'kid' must be a string");
    }

    // 2. The key: by kid from a key set, else the one key of the algorithm.
    const std::string_view kid = kid_value != nullptr ? view(*kid_value) : std::string_view();
    const std::string* secret = nullptr;
    EVP_PKEY* pkey = nullptr;
    const auto& set = keys_->set;
    const auto of_alg = [&](const named_key& k) { return k.alg == *which; };
    const auto named =
        kid_value != nullptr && !set.empty()
            ? std::find_if(set.begin(), set.end(),
                           [&](const named_key& k) { return k.alg == *which && k.kid == kid; })
            : set.end();
    if (named != set.end()) {
        secret = &named->secret;
        pkey = named->pkey.get();
    } else if (kid_value != nullptr && std::any_of(set.begin(), set.end(), of_alg)) {
        return fail(jwt_errc::alg_not_accepted,
                    "no " + std::string(alg) + " key has the kid " + quote(kid));
    } else if (*which == jwt_alg::hs256 && keys_->hs256_secret) {
        secret = &*keys_->hs256_secret;
    } else if (*which == jwt_alg::rs256 && keys_->rs256) {
        pkey = keys_->rs256.get();
    } else if (*which == jwt_alg::es256 && keys_->es256) {
        pkey = keys_->es256.get();
    } else if (std::count_if(set.begin(), set.end(), of_alg) == 1) {
        const named_key& only = *std::find_if(set.begin(), set.end(), of_alg);
        secret = &only.secret;
        pkey = only.pkey.get();
    } else {
        return fail(jwt_errc::alg_not_accepted,
                    "token has no 'kid' and several " + std::string(alg) + " keys could verify it");
    }

    // 3. Signature, before anything in the payload is believed.
    const std::optional<std::string> signature = base64url::decode(signature_b64);
    if (!signature) return fail(jwt_errc::malformed, "token signature is not base64url");
    bool verified = false;
    switch (*which) {
        case jwt_alg::hs256:
            verified = hs256_verifies(*secret, signing_input, *signature);
            break;
        case jwt_alg::rs256:
            verified = rs256_verifies(pkey, signing_input, *signature);
            break;
        case jwt_alg::es256:
            verified = es256_verifies(pkey, signing_input, *signature);
            break;
    }
    if (!verified) return fail(jwt_errc::bad_signature, "signature does not verify");

    // 4. Claims.
    document payload;
    if (auto f = parse_part(payload_b64, "payload", options_, payload)) return *f;
    jwt_claims claims;

    const value* sub = find(payload, "sub");
    if (sub == nullptr) return fail(jwt_errc::bad_claims, "token has no 'sub' claim");
    if (!sub->IsString() || sub->GetStringLength() == 0) {
        return fail(jwt_errc::bad_claims, "'sub' must be a non-empty string");
    }
    claims.subject.assign(sub->GetString(), sub->GetStringLength());

    if (const value* user = find(payload, "username")) {
        if (!user->IsString()) return fail(jwt_errc::bad_claims, "'username' must be a string");
        claims.username.emplace(user->GetString(), user->GetStringLength());
    }
    if (const value* jti = find(payload, "jti")) {
        if (!jti->IsString()) return fail(jwt_errc::bad_claims, "'jti' must be a string");
        claims.token_id.emplace(jti->GetString(), jti->GetStringLength());
    }

    const double now = static_cast<double>(now_seconds);
    const double leeway = static_cast<double>(std::max<std::int64_t>(leeway_seconds, 0));
    auto exp = read_time(payload, "exp");
    if (auto* f = std::get_if<jwt_failure>(&exp)) return *f;
    auto nbf = read_time(payload, "nbf");
    if (auto* f = std::get_if<jwt_failure>(&nbf)) return *f;
    const std::optional<double> expires = std::get<std::optional<double>>(exp);
    const std::optional<double> not_before = std::get<std::optional<double>>(nbf);

    if (!expires && options_.require_exp) {
        return fail(jwt_errc::bad_claims, "token has no 'exp' claim, so it would never expire");
    }
    if (expires) {
        if (now > *expires + leeway) {
            return fail(jwt_errc::expired,
                        "token expired " + std::to_string(std::llround(now - *expires)) + " s ago");
        }
        claims.expires_at = static_cast<std::int64_t>(std::floor(*expires));
    }
    if (not_before) {
        if (now + leeway < *not_before) {
            return fail(jwt_errc::not_yet_valid,
                        "token is not valid for another " +
                            std::to_string(std::llround(*not_before - now)) + " s");
        }
        claims.not_before = static_cast<std::int64_t>(std::floor(*not_before));
    }

    if (auto f = read_grant(payload, claims.grant)) return *f;
    return claims;
}

}  // namespace mqttws
