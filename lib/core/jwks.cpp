// jwt_verifier::accept_jwks: keys from a JSON Web Key Set (RFC 7517), turned into the same keys
// a PEM file or a secret gives (jwt_keys.hpp). RSA keys from their modulus and exponent, EC keys
// from their P-256 point, `oct` keys from their bytes; each must pass the checks a key from the
// command line passes.
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/param_build.h>
#include <rapidjson/document.h>

#include <memory>
#include <string>

#include "core/base64.hpp"
#include "core/jwt_keys.hpp"
#include "core/text.hpp"

namespace mqttws {
namespace {

namespace rj = rapidjson;

struct bn_deleter {
    void operator()(BIGNUM* b) const noexcept { BN_free(b); }
};
using bn_ptr = std::unique_ptr<BIGNUM, bn_deleter>;

std::optional<std::string> member_string(const rj::Value& key, const char* name) {
    const auto it = key.FindMember(name);
    if (it == key.MemberEnd() || !it->value.IsString()) return std::nullopt;
    return std::string(it->value.GetString(), it->value.GetStringLength());
}

// A base64url member of the key, decoded; nullopt when missing or not base64url.
std::optional<std::string> member_bytes(const rj::Value& key, const char* name) {
    const auto text = member_string(key, name);
    return text ? base64url::decode(*text) : std::nullopt;
}

// EVP_PKEY_fromdata with the parameters `build` adds.
template <class Build>
pkey_ptr key_from_params(const char* type, Build build) {
    const std::unique_ptr<OSSL_PARAM_BLD, decltype(&OSSL_PARAM_BLD_free)> bld(OSSL_PARAM_BLD_new(),
                                                                              &OSSL_PARAM_BLD_free);
    if (!bld || !build(bld.get())) return nullptr;
    const std::unique_ptr<OSSL_PARAM, decltype(&OSSL_PARAM_free)> params(
        OSSL_PARAM_BLD_to_param(bld.get()), &OSSL_PARAM_free);
    const std::unique_ptr<EVP_PKEY_CTX, decltype(&EVP_PKEY_CTX_free)> ctx(
        EVP_PKEY_CTX_new_from_name(nullptr, type, nullptr), &EVP_PKEY_CTX_free);
    EVP_PKEY* key = nullptr;
    if (!params || !ctx || EVP_PKEY_fromdata_init(ctx.get()) != 1 ||
        EVP_PKEY_fromdata(ctx.get(), &key, EVP_PKEY_PUBLIC_KEY, params.get()) != 1) {
        key = nullptr;
    }
    return pkey_ptr(key);
}

std::variant<pkey_ptr, std::string> rsa_key(const rj::Value& jwk) {
    const auto n = member_bytes(jwk, "n");
    const auto e = member_bytes(jwk, "e");
    if (!n || !e || n->empty() || e->empty())
        return std::string("an RSA key needs base64url 'n' and 'e'");
    const bn_ptr modulus(BN_bin2bn(reinterpret_cast<const unsigned char*>(n->data()),
                                   static_cast<int>(n->size()), nullptr));
    const bn_ptr exponent(BN_bin2bn(reinterpret_cast<const unsigned char*>(e->data()),
                                    static_cast<int>(e->size()), nullptr));
    pkey_ptr key = key_from_params("RSA", [&](OSSL_PARAM_BLD* bld) {
        return modulus && exponent &&
               OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_N, modulus.get()) == 1 &&
               OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_E, exponent.get()) == 1;
    });
    ERR_clear_error();
    if (!key) return std::string("OpenSSL refused the RSA key");
    if (auto problem = check_rs256_key(key.get())) return *problem;
    return key;
}

std::variant<pkey_ptr, std::string> ec_key(const rj::Value& jwk) {
    if (member_string(jwk, "crv") != std::optional<std::string>("P-256"))
        return std::string("an EC key must be on the curve P-256 (ES256)");
    const auto x = member_bytes(jwk, "x");
    const auto y = member_bytes(jwk, "y");
    if (!x || !y || x->size() != 32 || y->size() != 32)
        return std::string("an EC key needs 32-byte base64url 'x' and 'y'");
    const std::string point = "\x04" + *x + *y;  // uncompressed SEC 1 point
    pkey_ptr key = key_from_params("EC", [&](OSSL_PARAM_BLD* bld) {
        return OSSL_PARAM_BLD_push_utf8_string(bld, OSSL_PKEY_PARAM_GROUP_NAME, "prime256v1", 0) ==
                   1 &&
               OSSL_PARAM_BLD_push_octet_string(bld, OSSL_PKEY_PARAM_PUB_KEY, point.data(),
                                                point.size()) == 1;
    });
    ERR_clear_error();
    if (!key) return std::string("OpenSSL refused the EC key (not a point on P-256?)");
    if (auto problem = check_es256_key(key.get())) return *problem;
    return key;
}

}  // namespace

std::optional<std::string> jwt_verifier::accept_jwks(std::string_view jwks_json) {
    if (json_nesting_exceeds(jwks_json, 8)) return std::string("the key set is nested too deeply");
    rj::Document doc;
    doc.Parse<rj::kParseValidateEncodingFlag>(jwks_json.data(), jwks_json.size());
    if (doc.HasParseError() || !doc.IsObject()) return std::string("not a JSON object");
    const auto list = doc.FindMember("keys");
    if (list == doc.MemberEnd() || !list->value.IsArray())
        return std::string("no 'keys' array (a JSON Web Key Set is {\"keys\":[...]})");

    std::vector<named_key> accepted;
    std::size_t index = 0;
    for (const rj::Value& jwk : list->value.GetArray()) {
        const std::string where = "key " + std::to_string(index++);
        if (!jwk.IsObject()) return where + " is not an object";
        if (member_string(jwk, "use") == std::optional<std::string>("enc")) continue;
        named_key k;
        k.kid = member_string(jwk, "kid").value_or("");
        const std::string kty = member_string(jwk, "kty").value_or("");
        const std::optional<std::string> alg = member_string(jwk, "alg");
        const auto wrong_alg = [&](const char* expected) { return alg && *alg != expected; };
        if (kty == "RSA") {
            if (wrong_alg("RS256")) return where + ": only RS256 is supported for RSA keys";
            auto key = rsa_key(jwk);
            if (auto* problem = std::get_if<std::string>(&key)) return where + ": " + *problem;
            k.alg = jwt_alg::rs256;
            k.pkey = std::move(std::get<pkey_ptr>(key));
        } else if (kty == "EC") {
            if (wrong_alg("ES256")) return where + ": only ES256 is supported for EC keys";
            auto key = ec_key(jwk);
            if (auto* problem = std::get_if<std::string>(&key)) return where + ": " + *problem;
            k.alg = jwt_alg::es256;
            k.pkey = std::move(std::get<pkey_ptr>(key));
        } else if (kty == "oct") {
            if (wrong_alg("HS256")) return where + ": only HS256 is supported for oct keys";
            const auto secret = member_bytes(jwk, "k");
            if (!secret) return where + ": an oct key needs base64url 'k'";
            if (auto problem = check_hs256_secret(*secret)) return where + ": " + *problem;
            k.alg = jwt_alg::hs256;
            k.secret = *secret;
        } else {
            return where + ": unsupported key type '" + kty + "' (RSA, EC or oct)";
        }
        for (const auto& other : accepted) {
            if (other.alg == k.alg && other.kid == k.kid)
                return where + ": another key of its algorithm has the kid '" + k.kid + "'";
        }
        accepted.push_back(std::move(k));
    }
    if (accepted.empty()) return std::string("the key set has no key for signatures");
    keys_->set = std::move(accepted);
    return std::nullopt;
}

std::size_t jwt_verifier::key_set_size() const noexcept {
    return keys_->set.size();
}

}  // namespace mqttws
