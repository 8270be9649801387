// libFuzzer target for JWT verification (jwt.hpp).
//
// The first input byte picks a mode, so that the fuzzer reaches past the signature check:
//   0: the rest is a token, verified as it is;
//   1: the rest is a payload JSON, signed here with the HS256 secret under a fixed header —
//      exercises the claims; a correctly signed token must never fail on its signature;
//   2: the rest is "header JSON\npayload JSON", signed here with the HS256 secret;
//   3: the rest is 64 raw ES256 signature bytes and a payload — exercises the r||s to DER
//      conversion with arbitrary integers; such a signature must never verify.
// Keys: test-only keys (the same as tests/test_jwt.cpp).
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>
#include <variant>

#include "core/base64.hpp"
#include "core/jwt.hpp"
#include "core/topic.hpp"

namespace {

constexpr std::string_view rsa_public = R"(-----BEGIN PUBLIC KEY-----
MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEAtRXmXwoKSXYc4V45a2fJ
j9BeqhJNN2OO0hMsfBOZsmURmef3v3Dnl1f/rOb4855Ltu1COwwoRCfmIAhjTQ3k
KZGV7KoqH/cWpv+4pnxSaowwxwh3ql3mKKFYcm+Wv5fgioS52Ar9+/uqX/ABtwmv
41fcQpA7SrXwVgIj7UPjvQPMV3Mg2Bcmjr1+9ysCnaSNRs9wibYzsLbRDLsSY2rq
37QXqnFX1phTc43ZoIhS3wOvteEm4ktJ+B1TsTYcv6TgCwwKpENhrz1LNk7O8tV0
3vvGvJRebfqm9CVOeDmb5tZ4DzTDWlCVnl/bFlGQ5A0o1C1BWv6n/WQu0XO7cXl3
UwIDAQAB
-----END PUBLIC KEY-----
)";
constexpr std::string_view ec_public = R"(-----BEGIN PUBLIC KEY-----
MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAETd7mHM4/bUl4XAyr4AUe5FPDniwd
lahQ/9EQX2WBzBxj/v9a5TeDhJ4c4rHAzLa6448dMQq1STIvzCcXOTbq0w==
-----END PUBLIC KEY-----
)";
constexpr std::string_view secret = "0123456789abcdef0123456789abcdef";
constexpr std::int64_t now = 1'700'000'000;

void require(bool ok) {
    if (!ok) std::abort();
}

const mqttws::jwt_verifier& verifier() {
    static const mqttws::jwt_verifier v = [] {
        mqttws::jwt_verifier w;
        require(!w.accept_hs256(secret));
        require(!w.accept_rs256(rsa_public));
        require(!w.accept_es256(ec_public));
        return w;
    }();
    return v;
}

std::string hs256_token(std::string_view header, std::string_view payload) {
    std::string input =
        mqttws::base64url::encode(header) + "." + mqttws::base64url::encode(payload);
    unsigned char mac[EVP_MAX_MD_SIZE];
    unsigned int len = 0;
    HMAC(EVP_sha256(), secret.data(), static_cast<int>(secret.size()),
         reinterpret_cast<const unsigned char*>(input.data()), input.size(), mac, &len);
    return input + "." +
           mqttws::base64url::encode(std::string_view(reinterpret_cast<char*>(mac), len));
}

void check(const std::variant<mqttws::jwt_claims, mqttws::jwt_failure>& result) {
    if (const auto* f = std::get_if<mqttws::jwt_failure>(&result)) {
        require(!f->reason.empty() && f->reason.find('\n') == std::string::npos);
        return;
    }
    const auto& claims = std::get<mqttws::jwt_claims>(result);
    require(!claims.subject.empty());
    if (claims.grant) {
        for (const auto* list : {&claims.grant->pub, &claims.grant->sub}) {
            for (const std::string& filter : *list)
                require(!mqttws::topic::check_filter(filter));
        }
    }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    if (size == 0) return 0;
    const std::string_view rest(reinterpret_cast<const char*>(data) + 1, size - 1);
    const mqttws::jwt_verifier& v = verifier();
    switch (data[0] % 5) {
        case 0:
            check(v.verify(rest, now));
            break;
        case 1: {
            const auto result = v.verify(hs256_token(R"({"alg":"HS256","typ":"JWT"})", rest), now);
            check(result);
            if (const auto* f = std::get_if<mqttws::jwt_failure>(&result)) {
                require(f->code != mqttws::jwt_errc::bad_signature &&
                        f->code != mqttws::jwt_errc::alg_not_accepted);
            }
            break;
        }
        case 2: {
            const std::size_t nl = rest.find('\n');
            const std::string_view header = rest.substr(0, nl);
            const std::string_view payload =
                nl == std::string_view::npos ? std::string_view() : rest.substr(nl + 1);
            check(v.verify(hs256_token(header, payload), now));
            break;
        }
        case 3: {
            std::string sig(rest.substr(0, 64));
            sig.resize(64, '\0');
            const std::string_view payload = rest.size() > 64 ? rest.substr(64) : "{}";
            const std::string token = mqttws::base64url::encode(R"({"alg":"ES256"})") + "." +
                                      mqttws::base64url::encode(payload) + "." +
                                      mqttws::base64url::encode(sig);
            const auto result = v.verify(token, now);
            require(std::holds_alternative<mqttws::jwt_failure>(result) &&
                    std::get<mqttws::jwt_failure>(result).code == mqttws::jwt_errc::bad_signature);
            break;
        }
        case 4: {
            // A JSON Web Key Set: accepted whole, or refused with a reason and no key kept.
            mqttws::jwt_verifier w;
            const auto problem = w.accept_jwks(rest);
            require(problem ? w.key_set_size() == 0 && !problem->empty() : w.key_set_size() > 0);
            break;
        }
    }
    return 0;
}
