// Unit tests for core/jwt: verifying JWTs (HS/RS/ES algorithms, key sets, exp/nbf leeway, the
// acl claim, malformed and tampered tokens) and base64url.
#include <doctest/doctest.h>
#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/pem.h>

#include <memory>
#include <string>
#include <variant>

#include "core/base64.hpp"
#include "core/jwt.hpp"
#include "token_signing.hpp"

using mqttws::jwt_claims;
using mqttws::jwt_errc;
using mqttws::jwt_failure;
using mqttws::jwt_verifier;
namespace base64url = mqttws::base64url;

namespace {

// Test-only keys, generated once with `openssl genpkey` (RSA 2048, EC P-256, plus a 1024-bit RSA
// and a P-384 key that must be refused). They protect nothing.
constexpr std::string_view rsa_a_private = R"(-----BEGIN PRIVATE KEY-----
MIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQC1FeZfCgpJdhzh
XjlrZ8mP0F6qEk03Y47SEyx8E5myZRGZ5/e/cOeXV/+s5vjznku27UI7DChEJ+Yg
CGNNDeQpkZXsqiof9xam/7imfFJqjDDHCHeqXeYooVhyb5a/l+CKhLnYCv37+6pf
8AG3Ca/jV9xCkDtKtfBWAiPtQ+O9A8xXcyDYFyaOvX73KwKdpI1Gz3CJtjOwttEM
uxJjaurftBeqcVfWmFNzjdmgiFLfA6+14SbiS0n4HVOxNhy/pOALDAqkQ2GvPUs2
Ts7y1XTe+8a8lF5t+qb0JU54OZvm1ngPNMNaUJWeX9sWUZDkDSjULUFa/qf9ZC7R
c7txeXdTAgMBAAECggEAR/X9d7waLWo5/NdAUy3J3BQuYkBmngG6wkGrVl1FoS5n
ybT0b4fTCIIIUPHycYFwzi9HuAZTRA5k9UrQB1FjX5+CqCtRFSXQQynw+3wBFmVC
hv2W7EVnTrMbXlJ44gddTD6FSdTIbKfsYzaRv+aiFmKWXX9KiJx3dv5fv4xQho49
4cifJYZU7F0ZB8Rb1qBbiTALb+HcjwLGn8RU7aZiEXZ3yGpgXUv+jS7yd9SLWmHJ
PhrttpkYT9spovauX8BkmUTAAQzBe+4i67+QXZFHuhAPMw0GXXatnqnXEct3RJg2
nn356UR32FAM2k7EnFVfU7Fl92XlBu21HH8LEnGPIQKBgQDlTQhyjKQhjUB4jp2K
pFXCaXOAedlv2Rqg9iU6DNaQ32K+HDYJFrIFI3Yg4aqk3ehJg8mpZw2fEy0zxwDc
ajqS/O82CuidXs5YsTmGHjKAn4IwqCo4CrhF8oKRASvY5rHrxbi0QwRApTa/UicC
KeNg2kdrgKITRGXks5Aa71qk4QKBgQDKK6urrvmtXz5x+yxyyfEALPgZ4NWH6qqn
5a7XEMBIhomDrVJL6r0nw4/wACPWYq9nZV3jLKT5SCJ9/meqIGVlvuqIubnkvZYQ
7d9196OBryrHZjNV3YaTnb8hg/HwKFs1epfHmN6hm5t8Pch6PbgiJzwwEnEFxp1v
4CWyWq/uswKBgC5rKMGfrP5JzPpazJOrbtz7YfFpOVZGGfjpu2GEBc+wGRopNdsj
KAiYRCql5FiZv5NaRXGwtfY0+JqZt5fnPVJSN8616J8q+RTFU8LNzCVzpPRapqlP
qjwmur3GAe1Xzj7PePOs+WhoyatzYwgyGKCbr4eYs7a4yvPAUfTR7YShAoGBAJ/9
32WGm2Bwt2JMe+h7l5WkANO58kIVm+gzBCJ+xyyeC8WBLFeX9Qm64fX0pmfKwTT6
K0rU0dnVFDbRVgh0isnyRHjfQhWbU18iYG1jBKpkjV4vqwCQxyea9t73JEgCJ+wy
kFsMx2LtWicAXd8faNDea+s/LOJ9Q6p9oFd9HS2xAoGAFqoMUiwGFW4SnoVzz4mc
aEA3Oh0gx5zL2i6eEpYkKzdYF5aT4dOvmBgeWE3OD3wKhxHd6ZLh4CeI9OcmhEnb
+YwB1wOaMLrwZH+pniJscP7Eyzbh9+pMnv5ZS+En1A2tDAGVcFxjXpRVZMEW3JQX
lrAxPTCuPeh/IHaH/EaCnHo=
-----END PRIVATE KEY-----
)";
constexpr std::string_view rsa_a_public = R"(-----BEGIN PUBLIC KEY-----
MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEAtRXmXwoKSXYc4V45a2fJ
j9BeqhJNN2OO0hMsfBOZsmURmef3v3Dnl1f/rOb4855Ltu1COwwoRCfmIAhjTQ3k
KZGV7KoqH/cWpv+4pnxSaowwxwh3ql3mKKFYcm+Wv5fgioS52Ar9+/uqX/ABtwmv
41fcQpA7SrXwVgIj7UPjvQPMV3Mg2Bcmjr1+9ysCnaSNRs9wibYzsLbRDLsSY2rq
37QXqnFX1phTc43ZoIhS3wOvteEm4ktJ+B1TsTYcv6TgCwwKpENhrz1LNk7O8tV0
3vvGvJRebfqm9CVOeDmb5tZ4DzTDWlCVnl/bFlGQ5A0o1C1BWv6n/WQu0XO7cXl3
UwIDAQAB
-----END PUBLIC KEY-----
)";
constexpr std::string_view rsa_b_public = R"(-----BEGIN PUBLIC KEY-----
MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEApSb5Ks6JsQ/uBY4YSJJG
452+1Terlx7Un370ZZC03FWILDY5ny26AxI90h9Zwr+MQ0+uc+neHffq7f05IDm5
dLkv/zSfHY5mbesz0JaEL5xgZ3NTFhee6wWx40yMf40R/Ti+2rDYOItgN7liFMTm
NasZcd8dHn3JfTf79eQzK73bLMfrp748jlGnh0X1/SR9e/B1aGb+I0Zy81jlxV1w
DJ4ZL5yhaycK/vA3wOFLzgd5fgSDuxAZ9FhO3Y+WxHlhWVDyqvnWEa2XmNr992NB
UZlmI07r6CWkc9Tny3vQpJFv4vfz9JmamczUGtFK+9HLMbsGu1l6UHvK0+2T0Swe
uwIDAQAB
-----END PUBLIC KEY-----
)";
constexpr std::string_view ec_a_private = R"(-----BEGIN PRIVATE KEY-----
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgPkx2Zc4SaRHCUlnK
NvwDZSl0/KIzGEQhIAMD0MgxeB+hRANCAARN3uYczj9tSXhcDKvgBR7kU8OeLB2V
qFD/0RBfZYHMHGP+/1rlN4OEnhziscDMtrrjjx0xCrVJMi/MJxc5NurT
-----END PRIVATE KEY-----
)";
constexpr std::string_view ec_a_public = R"(-----BEGIN PUBLIC KEY-----
MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAETd7mHM4/bUl4XAyr4AUe5FPDniwd
lahQ/9EQX2WBzBxj/v9a5TeDhJ4c4rHAzLa6448dMQq1STIvzCcXOTbq0w==
-----END PUBLIC KEY-----
)";
constexpr std::string_view ec_b_public = R"(-----BEGIN PUBLIC KEY-----
MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEIvAF0aT8SwpfSZKSl2/QjuK3nFaF
glyI1Scq/7HCA0xd497dyUyycDLmzG8CEunX7snvHmDjwqDoBAm2GbpYxA==
-----END PUBLIC KEY-----
)";
constexpr std::string_view rsa_small_public = R"(-----BEGIN PUBLIC KEY-----
MIGfMA0GCSqGSIb3DQEBAQUAA4GNADCBiQKBgQDfzb2KmR0UJHzumGfWjD1nJxtK
qR5ZcqG3zYDsQV8Ouw72iWT9lx+eo57KyIo6U7Wj9dMAudga8fzZP9z7lEDCcPiw
S4rOlbJVxqrLws9kVaaBFyqzf3fXtVhtvzprQw4o9swo3AAZMalW6Nn45/6cor0f
AXUaxlwoKzkPFc5p7QIDAQAB
-----END PUBLIC KEY-----
)";
constexpr std::string_view ec_p384_public = R"(-----BEGIN PUBLIC KEY-----
MHYwEAYHKoZIzj0CAQYFK4EEACIDYgAEcMMMZmMk3wOb1FY4pw/kBJcnoMtXRFt3
+gHKUrDkgABghPmCeeCa46kt+tfEFPlao47Q3IYJa4wxhY1ivOB8HhNuJ9OVaXhd
WvFzyUJ6N1Cr/g/kafsvnYY7MSxUJaHl
-----END PUBLIC KEY-----
)";

constexpr std::string_view hs_secret = "0123456789abcdef0123456789abcdef";  // 32 bytes
constexpr std::int64_t now = 1'700'000'000;

// Tokens made by an independent implementation (PyJWT 2.6.0, Debian's python3-jwt) with
//   claims = {"sub":"device-1","exp":2000000000,"nbf":1600000000,"iat":1600000000,
//             "username":"alice","acl":{"pub":["devices/device-1/#"],
//             "sub":["devices/+/status"],"all":["common/#"]}}
//   jwt.encode(claims, hs_secret | rsa_a_private | ec_a_private, algorithm=...)
constexpr std::string_view pyjwt_hs256 =
    "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiJkZXZpY2UtMSIsImV4cCI6MjAwMDAwMDA"
    "wMCwibmJmIjoxNjAwMDAwMDAwLCJpYXQiOjE2MDAwMDAwMDAsInVzZXJuYW1lIjoiYWxpY2UiLCJhY2w"
    "iOnsicHViIjpbImRldmljZXMvZGV2aWNlLTEvIyJdLCJzdWIiOlsiZGV2aWNlcy8rL3N0YXR1cyJdLCJ"
    "hbGwiOlsiY29tbW9uLyMiXX19.8Ucj15OUcI_fstDwBr8bqVgONx9nplJETtC83mYmZn0";
constexpr std::string_view pyjwt_rs256 =
    "eyJhbGciOiJSUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiJkZXZpY2UtMSIsImV4cCI6MjAwMDAwMDA"
    "wMCwibmJmIjoxNjAwMDAwMDAwLCJpYXQiOjE2MDAwMDAwMDAsInVzZXJuYW1lIjoiYWxpY2UiLCJhY2w"
    "iOnsicHViIjpbImRldmljZXMvZGV2aWNlLTEvIyJdLCJzdWIiOlsiZGV2aWNlcy8rL3N0YXR1cyJdLCJ"
    "hbGwiOlsiY29tbW9uLyMiXX19.mvKdGm086lhBmAP9gyKDG01sEqKTA2oBW_cCVeSTI9Xb64h7R20--j"
    "aeHzLJ93AIXt5OOi4uGh6fsr370HuHOQwQwVAZLtBDqwjPtk64YBE6k00eO3UsoZbTT_cqBGBbYQXm2M"
    "iigfpYeLh_LuPEBBGBIA1VMNapPPlWelzrcaQEHxVnG4VPW-PGU1UggrA97qRdLNwN6AwLbHsOGzA5Rm"
    "_hZ44Yo2CJlAtcVKUXFMbZhWOHEI2s2eT8gM3emv2DXzziE5KWT6LHzRKyAGC1alvTtWrW3Gs1IiFepN"
    "Hyid4q5UPwj2IR2SLQyv5w_9JGjJWuTC7DB-fmBgxtZ9CFeA";
constexpr std::string_view pyjwt_es256 =
    "eyJhbGciOiJFUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiJkZXZpY2UtMSIsImV4cCI6MjAwMDAwMDA"
    "wMCwibmJmIjoxNjAwMDAwMDAwLCJpYXQiOjE2MDAwMDAwMDAsInVzZXJuYW1lIjoiYWxpY2UiLCJhY2w"
    "iOnsicHViIjpbImRldmljZXMvZGV2aWNlLTEvIyJdLCJzdWIiOlsiZGV2aWNlcy8rL3N0YXR1cyJdLCJ"
    "hbGwiOlsiY29tbW9uLyMiXX19.yeNBUZ6jqoRPbYP8SkXTjh3c5W_KcBTkdBAFbwtoMv8B_LIcQuglbG"
    "9VeHom2L2vqJ4Q_8kt7wylPNK5XM2V4Q";

// ---- signing with OpenSSL, to make tokens inside the tests ----

enum class alg { hs256, rs256, es256 };

std::string b64(std::string_view s) {
    return base64url::encode(s);
}

std::string bytes(const unsigned char* p, std::size_t n) {
    return std::string(reinterpret_cast<const char*>(p), n);
}

std::string sign_with_private_key(std::string_view pem, std::string_view input) {
    std::unique_ptr<BIO, decltype(&BIO_free)> bio(
        BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())), &BIO_free);
    REQUIRE(bio);
    std::unique_ptr<EVP_PKEY, decltype(&EVP_PKEY_free)> key(
        PEM_read_bio_PrivateKey(bio.get(), nullptr, nullptr, nullptr), &EVP_PKEY_free);
    REQUIRE(key);
    std::unique_ptr<EVP_MD_CTX, decltype(&EVP_MD_CTX_free)> ctx(EVP_MD_CTX_new(), &EVP_MD_CTX_free);
    REQUIRE(EVP_DigestSignInit(ctx.get(), nullptr, EVP_sha256(), nullptr, key.get()) == 1);
    std::size_t len = 0;
    const auto* data = reinterpret_cast<const unsigned char*>(input.data());
    REQUIRE(EVP_DigestSign(ctx.get(), nullptr, &len, data, input.size()) == 1);
    std::string sig(len, '\0');
    REQUIRE(EVP_DigestSign(ctx.get(), reinterpret_cast<unsigned char*>(sig.data()), &len, data,
                           input.size()) == 1);
    sig.resize(len);
    if (EVP_PKEY_get_base_id(key.get()) != EVP_PKEY_EC) return sig;
    // ECDSA: OpenSSL gives DER; JWS wants r||s, 32 bytes each (RFC 7518 §3.4).
    const auto* p = reinterpret_cast<const unsigned char*>(sig.data());
    std::unique_ptr<ECDSA_SIG, decltype(&ECDSA_SIG_free)> ecdsa(
        d2i_ECDSA_SIG(nullptr, &p, static_cast<long>(sig.size())), &ECDSA_SIG_free);
    REQUIRE(ecdsa);
    unsigned char raw[64];
    REQUIRE(BN_bn2binpad(ECDSA_SIG_get0_r(ecdsa.get()), raw, 32) == 32);
    REQUIRE(BN_bn2binpad(ECDSA_SIG_get0_s(ecdsa.get()), raw + 32, 32) == 32);
    return bytes(raw, 64);
}

std::string hmac(std::string_view secret, std::string_view input) {
    std::string mac = mqttws::test::hmac_sha256(secret, input);
    REQUIRE(!mac.empty());
    return mac;
}

// A compact JWS over the given header and payload JSON texts.
std::string make_token(std::string_view header_json, std::string_view payload_json, alg how,
                       std::string_view key) {
    const std::string input = b64(header_json) + "." + b64(payload_json);
    const std::string sig =
        how == alg::hs256 ? hmac(key, input) : sign_with_private_key(key, input);
    return input + "." + b64(sig);
}

const char* header_for(alg how) {
    switch (how) {
        case alg::hs256:
            return R"({"alg":"HS256","typ":"JWT"})";
        case alg::rs256:
            return R"({"alg":"RS256","typ":"JWT"})";
        case alg::es256:
            return R"({"alg":"ES256","typ":"JWT"})";
    }
    return "";
}

std::string_view signing_key(alg how) {
    switch (how) {
        case alg::hs256:
            return hs_secret;
        case alg::rs256:
            return rsa_a_private;
        case alg::es256:
            return ec_a_private;
    }
    return {};
}

std::string token(alg how, std::string_view payload_json) {
    return make_token(header_for(how), payload_json, how, signing_key(how));
}

std::string claims_json(std::int64_t exp, std::string extra = "") {
    return R"({"sub":"dev-1","exp":)" + std::to_string(exp) + extra + "}";
}

jwt_verifier all_algorithms() {
    jwt_verifier v;
    REQUIRE_FALSE(v.accept_hs256(hs_secret));
    REQUIRE_FALSE(v.accept_rs256(rsa_a_public));
    REQUIRE_FALSE(v.accept_es256(ec_a_public));
    return v;
}

jwt_claims expect_ok(const jwt_verifier& v, std::string_view tok, std::int64_t at = now) {
    auto result = v.verify(tok, at);
    if (auto* f = std::get_if<jwt_failure>(&result)) {
        FAIL_CHECK(f->reason);
        return {};
    }
    return std::get<jwt_claims>(std::move(result));
}

jwt_failure expect_failure(const jwt_verifier& v, std::string_view tok, std::int64_t at = now,
                           std::int64_t leeway = 30) {
    auto result = v.verify(tok, at, leeway);
    REQUIRE(std::holds_alternative<jwt_failure>(result));
    return std::get<jwt_failure>(std::move(result));
}

const alg every_alg[] = {alg::hs256, alg::rs256, alg::es256};

}  // namespace

TEST_CASE("jwt: verifies tokens made by PyJWT, with all claims") {
    const jwt_verifier v = all_algorithms();
    for (const std::string_view tok : {pyjwt_hs256, pyjwt_rs256, pyjwt_es256}) {
        const jwt_claims c = expect_ok(v, tok);
        CHECK(c.subject == "device-1");
        CHECK(c.username == std::optional<std::string>("alice"));
        CHECK(c.expires_at == std::optional<std::int64_t>(2000000000));
        CHECK(c.not_before == std::optional<std::int64_t>(1600000000));
        REQUIRE(c.grant.has_value());
        // "all" counts for both lists.
        CHECK(c.grant->pub == std::vector<std::string>{"devices/device-1/#", "common/#"});
        CHECK(c.grant->sub == std::vector<std::string>{"devices/+/status", "common/#"});
    }
}

TEST_CASE("jwt: RFC 7515 appendix A.1 (HS256) passes the signature check") {
    // The RFC's token has no `sub`, so it must get as far as the claims and fail there.
    const auto key = base64url::decode(
        "AyM1SysPpbyDfgZld3umj1qzKObwVMkoqQ-EstJQLr_T-1qS0gZH75aKtMN3Yj0iPS4hcgUuTwjAzZr1Z9CAow");
    REQUIRE(key);
    jwt_verifier v;
    REQUIRE_FALSE(v.accept_hs256(*key));
    const std::string_view rfc_token =
        "eyJ0eXAiOiJKV1QiLA0KICJhbGciOiJIUzI1NiJ9."
        "eyJpc3MiOiJqb2UiLA0KICJleHAiOjEzMDA4MTkzODAsDQogImh0dHA6Ly9leGFtcGxlLmNvbS9pc19yb290Ijp0"
        "cnVlfQ.dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
    const jwt_failure f = expect_failure(v, rfc_token, 1300819000);
    CHECK(f.code == jwt_errc::bad_claims);
    CHECK(f.reason == "token has no 'sub' claim");
    // One byte of the key different: now the signature fails.
    std::string other = *key;
    other[0] ^= 1;
    jwt_verifier w;
    REQUIRE_FALSE(w.accept_hs256(other));
    CHECK(expect_failure(w, rfc_token, 1300819000).code == jwt_errc::bad_signature);
}

TEST_CASE("jwt: valid tokens signed here verify for each algorithm") {
    const jwt_verifier v = all_algorithms();
    for (const alg how : every_alg) {
        CAPTURE(static_cast<int>(how));
        const jwt_claims c = expect_ok(v, token(how, claims_json(now + 60)));
        CHECK(c.subject == "dev-1");
        CHECK_FALSE(c.username.has_value());
        CHECK_FALSE(c.grant.has_value());
        CHECK(c.expires_at == std::optional<std::int64_t>(now + 60));
    }
}

TEST_CASE("jwt: expired tokens are refused, with the leeway") {
    const jwt_verifier v = all_algorithms();
    const jwt_failure f = expect_failure(v, token(alg::hs256, claims_json(now - 120)), now, 0);
    CHECK(f.code == jwt_errc::expired);
    CHECK(f.reason == "token expired 120 s ago");
    // 20 s late is within the default leeway of 30 s; 31 s is not.
    expect_ok(v, token(alg::rs256, claims_json(now - 20)));
    CHECK(expect_failure(v, token(alg::rs256, claims_json(now - 31))).code == jwt_errc::expired);
    // A leeway of 0 is strict.
    CHECK(expect_failure(v, token(alg::es256, claims_json(now - 1)), now, 0).code ==
          jwt_errc::expired);
}

TEST_CASE("jwt: tokens not yet valid are refused, with the leeway") {
    const jwt_verifier v = all_algorithms();
    const jwt_failure f = expect_failure(
        v, token(alg::hs256, claims_json(now + 600, ",\"nbf\":" + std::to_string(now + 100))));
    CHECK(f.code == jwt_errc::not_yet_valid);
    CHECK(f.reason == "token is not valid for another 100 s");
    const jwt_claims c = expect_ok(
        v, token(alg::hs256, claims_json(now + 600, ",\"nbf\":" + std::to_string(now + 10))));
    CHECK(c.not_before == std::optional<std::int64_t>(now + 10));
}

TEST_CASE("jwt: a token signed with another key does not verify") {
    jwt_verifier v;
    REQUIRE_FALSE(v.accept_hs256("another secret, also 32 bytes long"));
    REQUIRE_FALSE(v.accept_rs256(rsa_b_public));
    REQUIRE_FALSE(v.accept_es256(ec_b_public));
    for (const alg how : every_alg) {
        CAPTURE(static_cast<int>(how));
        const jwt_failure f = expect_failure(v, token(how, claims_json(now + 60)));
        CHECK(f.code == jwt_errc::bad_signature);
        CHECK(f.reason == "signature does not verify");
    }
}

TEST_CASE("jwt: a tampered payload or signature does not verify") {
    const jwt_verifier v = all_algorithms();
    for (const alg how : every_alg) {
        CAPTURE(static_cast<int>(how));
        const std::string good = token(how, claims_json(now + 60));
        const std::size_t dot1 = good.find('.');
        const std::size_t dot2 = good.find('.', dot1 + 1);
        // Swap in a payload claiming another subject, keep header and signature.
        const std::string forged =
            good.substr(0, dot1 + 1) +
            b64(R"({"sub":"admin","exp":)" + std::to_string(now + 60) + "}") + good.substr(dot2);
        CHECK(expect_failure(v, forged).code == jwt_errc::bad_signature);
        // Flip bits in the first signature byte (a character of the base64url text).
        std::string sig_bytes = *base64url::decode(good.substr(dot2 + 1));
        sig_bytes[0] ^= 0x01;
        const std::string flipped = good.substr(0, dot2 + 1) + b64(sig_bytes);
        CHECK(expect_failure(v, flipped).code == jwt_errc::bad_signature);
        // A signature cut short.
        sig_bytes[0] ^= 0x01;
        sig_bytes.pop_back();
        CHECK(expect_failure(v, good.substr(0, dot2 + 1) + b64(sig_bytes)).code ==
              jwt_errc::bad_signature);
    }
}

TEST_CASE("jwt: alg none is never accepted") {
    const jwt_verifier v = all_algorithms();
    for (const char* name : {"none", "None", "NONE"}) {
        CAPTURE(name);
        const std::string tok =
            b64(std::string(R"({"alg":")") + name + "\"}") + "." + b64(claims_json(now + 60)) + ".";
        const jwt_failure f = expect_failure(v, tok);
        CHECK(f.code == jwt_errc::alg_not_accepted);
        CHECK(f.reason == "alg '" + std::string(name) + "' is not accepted");
    }
}

TEST_CASE("jwt: no algorithm confusion: an RS256 key never verifies an HS256 token") {
    // The classic attack: sign HS256 with the server's RSA public key (PEM bytes) as secret.
    jwt_verifier rs_only;
    REQUIRE_FALSE(rs_only.accept_rs256(rsa_a_public));
    const std::string attack = make_token(R"({"alg":"HS256","typ":"JWT"})", claims_json(now + 60),
                                          alg::hs256, rsa_a_public);
    const jwt_failure f = expect_failure(rs_only, attack);
    CHECK(f.code == jwt_errc::alg_not_accepted);
    CHECK(f.reason == "alg 'HS256' is not accepted (accepted: RS256)");
    // Even with an HS256 secret configured as well, the RSA key is not used as the secret.
    jwt_verifier both;
    REQUIRE_FALSE(both.accept_rs256(rsa_a_public));
    REQUIRE_FALSE(both.accept_hs256(hs_secret));
    CHECK(expect_failure(both, attack).code == jwt_errc::bad_signature);
    // An ES256 token against an RS256-only verifier, and an ES256 signature under an RS256 header.
    CHECK(expect_failure(rs_only, token(alg::es256, claims_json(now + 60))).code ==
          jwt_errc::alg_not_accepted);
    const std::string es = token(alg::es256, claims_json(now + 60));
    const std::string relabelled = b64(R"({"alg":"RS256"})") + es.substr(es.find('.'));
    CHECK(expect_failure(all_algorithms(), relabelled).code == jwt_errc::bad_signature);
    // Other algorithm names are refused by name.
    const jwt_failure hs512 = expect_failure(
        rs_only, make_token(R"({"alg":"HS512"})", claims_json(now + 60), alg::hs256, hs_secret));
    CHECK(hs512.code == jwt_errc::alg_not_accepted);
}

TEST_CASE("jwt: a verifier with no keys accepts nothing") {
    const jwt_verifier none;
    const jwt_failure f = expect_failure(none, token(alg::hs256, claims_json(now + 60)));
    CHECK(f.code == jwt_errc::alg_not_accepted);
    CHECK(f.reason == "alg 'HS256' is not accepted (accepted: none configured)");
}

TEST_CASE("jwt: claims that are missing or of the wrong type are refused") {
    const jwt_verifier v = all_algorithms();
    const auto failure_for = [&](std::string_view payload) {
        return expect_failure(v, token(alg::hs256, payload));
    };
    const std::string exp = std::to_string(now + 60);
    jwt_failure f = failure_for(R"({"exp":)" + exp + "}");
    CHECK(f.code == jwt_errc::bad_claims);
    CHECK(f.reason == "token has no 'sub' claim");
    CHECK(failure_for(R"({"sub":42,"exp":)" + exp + "}").code == jwt_errc::bad_claims);
    CHECK(failure_for(R"({"sub":"","exp":)" + exp + "}").code == jwt_errc::bad_claims);
    CHECK(failure_for(R"({"sub":"d","exp":")" + exp + "\"}").code == jwt_errc::bad_claims);
    CHECK(failure_for(R"({"sub":"d","exp":)" + exp + R"(,"nbf":true})").code ==
          jwt_errc::bad_claims);
    CHECK(failure_for(R"({"sub":"d","exp":)" + exp + R"(,"username":7})").code ==
          jwt_errc::bad_claims);
    CHECK(failure_for(R"({"sub":"d","exp":1e300})").code == jwt_errc::bad_claims);
    // exp is required by default...
    f = failure_for(R"({"sub":"d"})");
    CHECK(f.code == jwt_errc::bad_claims);
    CHECK(f.reason == "token has no 'exp' claim, so it would never expire");
    // ...unless configured otherwise.
    mqttws::jwt_options lax;
    lax.require_exp = false;
    jwt_verifier w(lax);
    REQUIRE_FALSE(w.accept_hs256(hs_secret));
    const jwt_claims c = expect_ok(w, token(alg::hs256, R"({"sub":"d"})"));
    CHECK_FALSE(c.expires_at.has_value());
    // NumericDate may have a fraction.
    const jwt_claims frac = expect_ok(v, token(alg::hs256, R"({"sub":"d","exp":)" + exp + ".75}"));
    CHECK(frac.expires_at == std::optional<std::int64_t>(now + 60));
}

TEST_CASE("jwt: the acl claim becomes a grant, or the token is refused") {
    const jwt_verifier v = all_algorithms();
    const std::string head = R"({"sub":"d","exp":)" + std::to_string(now + 60) + R"(,"acl":)";
    const auto with_acl = [&](std::string_view acl_json) {
        return v.verify(token(alg::rs256, head + std::string(acl_json) + "}"), now);
    };
    auto ok = with_acl(R"({"pub":["a/%c"],"sub":["b/#","c/+"]})");
    REQUIRE(std::holds_alternative<jwt_claims>(ok));
    const auto& grant = std::get<jwt_claims>(ok).grant;
    REQUIRE(grant.has_value());
    CHECK(grant->pub == std::vector<std::string>{"a/%c"});
    CHECK(grant->sub == std::vector<std::string>{"b/#", "c/+"});
    // An empty acl object grants nothing (present, but empty).
    auto empty = with_acl("{}");
    REQUIRE(std::holds_alternative<jwt_claims>(empty));
    REQUIRE(std::get<jwt_claims>(empty).grant.has_value());
    CHECK(std::get<jwt_claims>(empty).grant->pub.empty());
    CHECK(std::get<jwt_claims>(empty).grant->sub.empty());
    for (const char* bad :
         {R"({"pub":"a/b"})", R"({"pub":[1]})", R"({"sub":["a/#/b"]})", R"({"sub":["$share/g/a"]})",
          R"("a/#")", R"([{"permission":"allow","action":"all","topic":"#"}])"}) {
        CAPTURE(bad);
        auto result = with_acl(bad);
        REQUIRE(std::holds_alternative<jwt_failure>(result));
        CHECK(std::get<jwt_failure>(result).code == jwt_errc::bad_claims);
    }
}

TEST_CASE("jwt: malformed tokens are refused before any key is used") {
    const jwt_verifier v = all_algorithms();
    const std::string good = token(alg::hs256, claims_json(now + 60));
    const std::string payload = b64(claims_json(now + 60));
    const auto code_of = [&](std::string_view tok) { return expect_failure(v, tok).code; };
    CHECK(code_of("") == jwt_errc::malformed);
    CHECK(code_of("abc") == jwt_errc::malformed);
    CHECK(code_of("a.b") == jwt_errc::malformed);
    CHECK(code_of(good + ".x") == jwt_errc::malformed);             // four parts
    CHECK(code_of(good + "=") == jwt_errc::malformed);              // padding
    CHECK(code_of("e30." + payload + ".") == jwt_errc::malformed);  // {} has no alg
    CHECK(code_of(b64("[1]") + "." + payload + ".") == jwt_errc::malformed);
    CHECK(code_of(b64("{\"alg\":") + "." + payload + ".") == jwt_errc::malformed);
    CHECK(code_of(b64(R"({"alg":"HS256","alg":"none"})") + "." + payload + ".") ==
          jwt_errc::malformed);
    CHECK(code_of(make_token(R"({"alg":"HS256","crit":["exp"]})", claims_json(now + 60), alg::hs256,
                             hs_secret)) == jwt_errc::malformed);
    // Standard base64 characters are not base64url.
    std::string plus = good;
    plus[plus.find('.') - 1] = '+';
    CHECK(code_of(plus) == jwt_errc::malformed);
    // A payload that is not an object, correctly signed.
    CHECK(code_of(make_token(header_for(alg::hs256), "\"dev-1\"", alg::hs256, hs_secret)) ==
          jwt_errc::malformed);
    CHECK(code_of(make_token(header_for(alg::hs256), R"({"sub":"a","sub":"b","exp":1})", alg::hs256,
                             hs_secret)) == jwt_errc::malformed);
    // Deep nesting and huge tokens are refused without parsing.
    CHECK(code_of(
              make_token(header_for(alg::hs256),
                         R"({"sub":"a","x":)" + std::string(100, '[') + std::string(100, ']') + "}",
                         alg::hs256, hs_secret)) == jwt_errc::malformed);
    const jwt_failure huge = expect_failure(v, std::string(20000, 'a'));
    CHECK(huge.code == jwt_errc::malformed);
    CHECK(huge.reason == "token is longer than 16384 bytes");
}

TEST_CASE("jwt: keys are checked when configured") {
    jwt_verifier v;
    CHECK(v.accept_hs256("too short"));
    CHECK(v.accept_rs256("not a pem"));
    CHECK(v.accept_rs256(ec_a_public));       // not RSA
    CHECK(v.accept_rs256(rsa_small_public));  // 1024 bits
    CHECK(v.accept_es256(rsa_a_public));      // not EC
    CHECK(v.accept_es256(ec_p384_public));    // wrong curve
    CHECK(v.accept_es256(rsa_a_private));     // a private key is not a public key PEM
    CHECK_FALSE(v.accepts(mqttws::jwt_alg::hs256));
    CHECK_FALSE(v.accepts(mqttws::jwt_alg::rs256));
    CHECK_FALSE(v.accepts(mqttws::jwt_alg::es256));
    CHECK_FALSE(v.accept_rs256(rsa_a_public));
    CHECK(v.accepts(mqttws::jwt_alg::rs256));
}

TEST_CASE("base64url: round trip and canonical form only") {
    for (const std::string_view s : {"", "f", "fo", "foo", "foob", "fooba", "foobar"}) {
        CHECK(base64url::decode(base64url::encode(s)) == std::optional<std::string>(s));
    }
    CHECK(base64url::encode("\xfb\xff") == "-_8");
    CHECK(base64url::decode("-_8") == std::optional<std::string>("\xfb\xff"));
    CHECK_FALSE(base64url::decode("Zg=="));  // padding
    CHECK_FALSE(base64url::decode("Zh"));    // non-zero trailing bits ("Zg" is "f")
    CHECK_FALSE(base64url::decode("Z"));     // impossible length
    CHECK_FALSE(base64url::decode("+/8"));   // standard alphabet
    CHECK_FALSE(base64url::decode("Zm 9v"));
}

// ---- JSON Web Key Sets ----

namespace {

// The test keys above as JWKs: n, e, x, y and k computed from the PEM files with the openssl
// command line (an independent implementation), e.g. `openssl rsa -pubin -noout -modulus`.
constexpr std::string_view jwk_rsa_a =
    R"({"kty":"RSA","kid":"rsa-a","alg":"RS256","use":"sig","e":"AQAB","n":"tRXmXwoKSXYc4V45a2fJj)"
    R"(9BeqhJNN2OO0hMsfBOZsmURmef3v3Dnl1f_rOb4855Ltu1COwwoRCfmIAhjTQ3kKZGV7KoqH_cWpv-4pnxSaowwxwh)"
    R"(3ql3mKKFYcm-Wv5fgioS52Ar9-_uqX_ABtwmv41fcQpA7SrXwVgIj7UPjvQPMV3Mg2Bcmjr1-9ysCnaSNRs9wibYzsL)"
    R"(bRDLsSY2rq37QXqnFX1phTc43ZoIhS3wOvteEm4ktJ-B1TsTYcv6TgCwwKpENhrz1LNk7O8tV03vvGvJRebfqm9CVOe)"
    R"(Dmb5tZ4DzTDWlCVnl_bFlGQ5A0o1C1BWv6n_WQu0XO7cXl3Uw"})";
constexpr std::string_view jwk_ec_a =
    R"({"kty":"EC","kid":"ec-a","crv":"P-256","x":"Td7mHM4_bUl4XAyr4AUe5FPDniwdlahQ_9EQX2WBzBw",)"
    R"("y":"Y_7_WuU3g4SeHOKxwMy2uuOPHTEKtUkyL8wnFzk26tM"})";
constexpr std::string_view jwk_hs =
    R"({"kty":"oct","kid":"hs","alg":"HS256","k":"MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY"})";

std::string key_set(std::initializer_list<std::string_view> keys) {
    std::string out = R"({"keys":[)";
    bool first = true;
    for (const auto k : keys) {
        if (!first) out += ',';
        first = false;
        out += k;
    }
    return out + "]}";
}

std::string token_with_kid(alg how, std::string_view kid, std::string_view payload_json) {
    const std::string alg_name = how == alg::hs256   ? "HS256"
                                 : how == alg::rs256 ? "RS256"
                                                     : "ES256";
    const std::string header = R"({"alg":")" + alg_name + R"(","kid":")" + std::string(kid) + "\"}";
    return make_token(header, payload_json, how, signing_key(how));
}

}  // namespace

TEST_CASE("jwt: a key set's keys verify tokens that name their kid") {
    jwt_verifier v;
    REQUIRE_FALSE(v.accept_jwks(key_set({jwk_rsa_a, jwk_ec_a, jwk_hs})));
    CHECK(v.key_set_size() == 3);
    CHECK(expect_ok(v, token_with_kid(alg::rs256, "rsa-a", claims_json(now + 60))).subject ==
          "dev-1");
    CHECK(expect_ok(v, token_with_kid(alg::es256, "ec-a", claims_json(now + 60))).subject ==
          "dev-1");
    CHECK(expect_ok(v, token_with_kid(alg::hs256, "hs", claims_json(now + 60))).subject == "dev-1");
    // PyJWT's tokens name no kid: the one key of their algorithm verifies them.
    for (const std::string_view tok : {pyjwt_hs256, pyjwt_rs256, pyjwt_es256})
        CHECK(expect_ok(v, tok).subject == "device-1");
    // An unknown kid is refused, even if the key of that algorithm would verify it.
    CHECK(expect_failure(v, token_with_kid(alg::rs256, "rsa-old", claims_json(now + 60))).code ==
          jwt_errc::alg_not_accepted);
}

TEST_CASE("jwt: with two keys of one algorithm a token must say which (rotation)") {
    // The old and the new key side by side, while tokens of both are in use.
    const std::string rsa_new =
        std::string(jwk_rsa_a).replace(std::string(jwk_rsa_a).find("rsa-a"), 5, "rsa-new");
    const std::string rsa_other_key =
        R"({"kty":"RSA","kid":"rsa-b","e":"AQAB","n":")" +
        std::string(
            "pSb5Ks6JsQ_uBY4YSJJG452-1Terlx7Un370ZZC03FWILDY5ny26AxI90h9Zwr-MQ0-uc-neHffq7f05"
            "IDm5dLkv_zSfHY5mbesz0JaEL5xgZ3NTFhee6wWx40yMf40R_Ti-2rDYOItgN7liFMTmNasZcd8dHn"
            "3JfTf79eQzK73bLMfrp748jlGnh0X1_SR9e_B1aGb-I0Zy81jlxV1wDJ4ZL5yhaycK_vA3wOFLzgd5"
            "fgSDuxAZ9FhO3Y-WxHlhWVDyqvnWEa2XmNr992NBUZlmI07r6CWkc9Tny3vQpJFv4vfz9JmamczUGt"
            "FK-9HLMbsGu1l6UHvK0-2T0Sweuw") +
        "\"}";
    jwt_verifier v;
    REQUIRE_FALSE(v.accept_jwks(key_set({rsa_other_key, rsa_new})));
    CHECK(expect_ok(v, token_with_kid(alg::rs256, "rsa-new", claims_json(now + 60))).subject ==
          "dev-1");
    // Signed by rsa-a but claiming to be rsa-b: rsa-b's key does not verify it.
    CHECK(expect_failure(v, token_with_kid(alg::rs256, "rsa-b", claims_json(now + 60))).code ==
          jwt_errc::bad_signature);
    CHECK(expect_failure(v, pyjwt_rs256).code == jwt_errc::alg_not_accepted);  // no kid
}

TEST_CASE("jwt: a key set with a bad key is refused whole") {
    const auto refused = [](const std::string& set) {
        jwt_verifier v;
        const auto problem = v.accept_jwks(set);
        CHECK(v.key_set_size() == 0);
        return problem.value_or("<accepted>");
    };
    CHECK(refused("[]").find("not a JSON object") != std::string::npos);
    CHECK(refused(R"({"keys":{}})").find("'keys'") != std::string::npos);
    CHECK(refused(key_set({jwk_ec_a, R"({"kty":"oct","k":"c2hvcnQ"})"})).find("32 bytes") !=
          std::string::npos);
    CHECK(refused(key_set({R"({"kty":"EC","crv":"P-384","x":"AA","y":"AA"})"})).find("P-256") !=
          std::string::npos);
    CHECK(refused(key_set({R"({"kty":"EC","crv":"P-256","x":"Td7mHM4_bUl4XAyr4AUe5FPDniwdlahQ_9EQX)"
                           R"(2WBzBw","y":"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"})"}))
              .find("P-256") != std::string::npos);  // not a point on the curve
    CHECK(refused(key_set({R"({"kty":"RSA","e":"AQAB","n":"3w"})"})).find("bits") !=
          std::string::npos);
    CHECK(refused(key_set({R"({"kty":"OKP","crv":"Ed25519","x":"AA"})"})).find("unsupported") !=
          std::string::npos);
    CHECK(refused(key_set({jwk_hs, jwk_hs})).find("kid 'hs'") != std::string::npos);
    CHECK(refused(key_set({R"({"kty":"RSA","use":"enc","e":"AQAB","n":"3w"})"})).find("no key") !=
          std::string::npos);
}

TEST_CASE("jwt: jti is read as the token's id") {
    const jwt_verifier v = all_algorithms();
    const jwt_claims c = expect_ok(v, token(alg::hs256, claims_json(now + 60, R"(,"jti":"t-17")")));
    CHECK(c.token_id == std::optional<std::string>("t-17"));
    CHECK(expect_failure(v, token(alg::hs256, claims_json(now + 60, R"(,"jti":17)"))).code ==
          jwt_errc::bad_claims);
}
