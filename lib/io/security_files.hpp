// Builds the engine's security_policy from the operator's files: a Mosquitto password file,
// a Mosquitto acl_file, a JWT secret, public key or key set, a revocation list. Read at start-up
// and again on SIGHUP (so keys rotate and revocations apply without a restart).
// Thread safety: a pure function of the files; call it from any one thread.
#pragma once

#include <memory>
#include <string>

#include "core/engine.hpp"

namespace mqttws {

struct security_files {
    std::string password_file;    // Mosquitto format (mosquitto_passwd): user:$7$… or $6$…
    std::string acl_file;         // Mosquitto acl_file syntax
    std::string jwt_secret;       // HS256 shared secret (the value itself)
    std::string jwt_secret_file;  // ...or a file holding it (re-read on SIGHUP, so it can rotate)
    std::string jwt_public_key;   // PEM file: RSA → RS256, P-256 EC → ES256
    std::string jwt_jwks;         // JSON Web Key Set file: keys chosen by the token's kid
    std::string revoked_file;     // revocation_list: jti / client / user lines
    std::string device_keys;      // device_keys: secrets of devices that sign their frames
    bool client_certificates = false;  // TLS client certificate CN identifies the client
    bool allow_anonymous = false;      // with a credential source configured, still admit anonymous

    bool any_credentials() const {
        return !password_file.empty() || !jwt_secret.empty() || !jwt_secret_file.empty() ||
               !jwt_public_key.empty() || !jwt_jwks.empty() || client_certificates;
    }
};

// Throws std::runtime_error naming the file and each problem (with line numbers) on failure.
std::shared_ptr<const security_policy> load_security(const security_files& files);

}  // namespace mqttws
