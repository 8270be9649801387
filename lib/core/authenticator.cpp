#include "core/authenticator.hpp"

#include <algorithm>

#include "core/text.hpp"

namespace mqttws {
namespace {

bool looks_like_jwt(const std::string& token) {
    return std::count(token.begin(), token.end(), '.') == 2;
}

}  // namespace

authenticator::authenticator(std::shared_ptr<const password_file> passwords,
                             std::shared_ptr<const jwt_verifier> jwt, bool accept_certificates,
                             bool allow_anonymous)
    : passwords_(std::move(passwords)),
      jwt_(std::move(jwt)),
      accept_certificates_(accept_certificates),
      allow_anonymous_(allow_anonymous) {}

bool authenticator::takes_token(const std::string& token) const {
    return jwt_ && looks_like_jwt(token);
}

bool authenticator::self_contained(const handshake_credentials& handshake) const {
    return (jwt_ && looks_like_jwt(handshake.bearer_token)) ||
           (!handshake.username.empty() && !handshake.password.empty()) ||
           !handshake.certificate_cn.empty();
}

namespace {

const auth_request& frame_or_none(const auth_request* frame) {
    static const auth_request no_frame;
    return frame != nullptr ? *frame : no_frame;
}

// The secret presented: a password, or a token (which may be a JWT).
const std::string& presented_secret(const auth_request& f, const handshake_credentials& h) {
    return !f.password.empty()   ? f.password
           : !f.token.empty()    ? f.token
           : !h.password.empty() ? h.password
                                 : h.bearer_token;
}

// The user a password is checked for: `username`, else the client id, else the handshake's.
const std::string& password_user_of(const auth_request& f, const handshake_credentials& h) {
    return !f.username.empty() ? f.username : !f.client_id.empty() ? f.client_id : h.username;
}

}  // namespace

std::string authenticator::password_user(const auth_request* frame,
                                         const handshake_credentials& handshake) const {
    const auth_request& f = frame_or_none(frame);
    const std::string& secret = presented_secret(f, handshake);
    if (!passwords_ || secret.empty()) return {};
    if (jwt_ && f.password.empty() && looks_like_jwt(secret)) return {};
    return password_user_of(f, handshake);
}

std::variant<identity, auth_refusal> authenticator::authenticate(
    const auth_request* frame, const handshake_credentials& handshake,
    std::int64_t now_seconds) const {
    const auth_request& f = frame_or_none(frame);
    const std::string& secret = presented_secret(f, handshake);

    if (!configured()) {
        // No credential source: every client is who it says it is.
        return identity{f.client_id,  f.username.empty() ? f.client_id : f.username,
                        std::nullopt, "anonymous",
                        std::nullopt, std::nullopt};
    }

    if (jwt_ && !secret.empty() && f.password.empty() && looks_like_jwt(secret)) {
        auto verified = jwt_->verify(secret, now_seconds);
        if (auto* failure = std::get_if<jwt_failure>(&verified))
            return auth_refusal{"JWT: " + failure->reason};
        auto& claims = std::get<jwt_claims>(verified);
        if (!is_valid_client_id(claims.subject)) {
            return auth_refusal{
                "JWT: sub is not a valid client id (1-128 characters, no '/', '+', '#')"};
        }
        if (!f.client_id.empty() && f.client_id != claims.subject) {
            return auth_refusal{"JWT: clientId '" + f.client_id + "' is not the token's sub '" +
                                claims.subject + "'"};
        }
        return identity{claims.subject,          claims.username.value_or(claims.subject),
                        std::move(claims.grant), "jwt",
                        claims.expires_at,       std::move(claims.token_id)};
    }

    if (passwords_ && !secret.empty()) {
        const std::string& user = password_user_of(f, handshake);
        if (user.empty()) return auth_refusal{"password given without a username or clientId"};
        // The user is who the client is: another clientId would let it act as someone else
        // wherever the ACL names clients (%c), e.g. report as another device.
        if (!f.client_id.empty() && f.client_id != user) {
            return auth_refusal{"password file: clientId '" + f.client_id + "' is not the user '" +
                                user + "'"};
        }
        if (!is_valid_client_id(user))
            return auth_refusal{"password file: the user name is not a valid client id"};
        switch (passwords_->verify(user, secret)) {
            case password_file::result::ok:
                return identity{user, user, std::nullopt, "password", std::nullopt, std::nullopt};
            case password_file::result::unknown_user:
                return auth_refusal{"password file: unknown user '" + user + "'"};
            case password_file::result::wrong_password:
                return auth_refusal{"password file: wrong password for user '" + user + "'"};
        }
    }

    if (!secret.empty()) {
        return auth_refusal{"a token was presented, but no configured method accepts it"};
    }

    if (accept_certificates_ && !handshake.certificate_cn.empty()) {
        if (!f.client_id.empty() && f.client_id != handshake.certificate_cn) {
            return auth_refusal{"certificate: clientId '" + f.client_id +
                                "' is not the certificate's CN '" + handshake.certificate_cn + "'"};
        }
        if (!is_valid_client_id(handshake.certificate_cn)) {
            return auth_refusal{"certificate: the CN is not a valid client id"};
        }
        return identity{handshake.certificate_cn,
                        handshake.certificate_cn,
                        std::nullopt,
                        "certificate",
                        std::nullopt,
                        std::nullopt};
    }

    if (allow_anonymous_) {
        return identity{f.client_id, {}, std::nullopt, "anonymous", std::nullopt, std::nullopt};
    }
    return auth_refusal{"no credentials presented and anonymous clients are not allowed"};
}

}  // namespace mqttws
