// Who a client is, decided from what it presented: the `auth` frame and the credentials of its
// WebSocket handshake (an `Authorization: Bearer` header or `?token=`, a verified TLS client
// certificate). Sources: a Mosquitto password file, a JWT verifier, client certificates.
//
// Rules (docs/security.md has the user's view):
// - A token with two dots is a JWT when a JWT key is configured: its `sub` is the client id
//   (a `clientId` given alongside must equal it), `username` claim or `sub` the username, and
//   its `acl` claim narrows what the ACL file allows.
// - Otherwise, with a password file, the user is `username` (or the client id) and the
//   password `password` (or `token`); the user is the client id (a different `clientId` is
//   refused, or the ACL's %c could be spoofed).
// - A verified client certificate's CN is the identity when nothing else is presented.
// - Credentials that are presented but wrong always fail; they never fall back to anonymous.
// - Nothing presented: anonymous, allowed when no source is configured or with
//   `allow_anonymous`.
//
// Thread safety: immutable after construction; the engine swaps in a new one on reload.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <variant>

#include "core/acl.hpp"
#include "core/credentials.hpp"
#include "core/jwt.hpp"
#include "core/requests.hpp"

namespace mqttws {

struct handshake_credentials {
    std::string bearer_token;  // Authorization: Bearer …, or ?token= in the URL
    std::string username;      // Authorization: Basic …
    std::string password;
    std::string certificate_cn;  // CN of a client certificate the TLS layer verified

    bool empty() const {
        return bearer_token.empty() && username.empty() && certificate_cn.empty();
    }
};

struct identity {
    std::string client_id;           // empty: the engine generates one (anonymous clients)
    std::string username;            // for the ACL's `user` sections and %u; empty when anonymous
    std::optional<acl_grant> grant;  // from a JWT `acl` claim
    std::string method;              // "jwt", "password", "certificate" or "anonymous"
    // A JWT's `exp` (Unix seconds; the bridge closes the connection then unless the client
    // refreshes its token) and `jti` (for revocation).
    std::optional<std::int64_t> expires_at;
    std::optional<std::string> token_id;
};

struct auth_refusal {
    std::string reason;  // for the log and the audit trail; clients only learn "failed"
};

class authenticator {
  public:
    authenticator() = default;
    authenticator(std::shared_ptr<const password_file> passwords,
                  std::shared_ptr<const jwt_verifier> jwt, bool accept_certificates,
                  bool allow_anonymous);

    // Some credential source is configured.
    bool configured() const { return passwords_ || jwt_ || accept_certificates_; }
    // Clients must present credentials (a source is configured and anonymous is not allowed).
    bool required() const { return configured() && !allow_anonymous_; }

    // Whether `token` is one this authenticator checks as a token (a JWT, with JWT keys set).
    bool takes_token(const std::string& token) const;
    // Whether the handshake alone says who the client is (a JWT, a user and password, a
    // certificate), so that it can be checked as soon as the connection opens.
    bool self_contained(const handshake_credentials& handshake) const;

    // The user whose password authenticate() would check for these credentials; empty when it
    // would check no password (a JWT, a certificate, nothing presented). For the per-user limit
    // on failed attempts, which is applied before the (deliberately slow) check.
    std::string password_user(const auth_request* frame,
                              const handshake_credentials& handshake) const;

    // `frame` is null when deciding from the handshake alone.
    std::variant<identity, auth_refusal> authenticate(const auth_request* frame,
                                                      const handshake_credentials& handshake,
                                                      std::int64_t now_seconds) const;

  private:
    std::shared_ptr<const password_file> passwords_;
    std::shared_ptr<const jwt_verifier> jwt_;
    bool accept_certificates_ = false;
    bool allow_anonymous_ = true;
};

}  // namespace mqttws
