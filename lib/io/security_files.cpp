#include "io/security_files.hpp"

#include <sys/stat.h>

#include <fstream>
#include <sstream>
#include <stdexcept>

#include "io/log.hpp"

namespace mqttws {
namespace {

// Secrets (passwords, device keys) should be readable by the bridge's user only. Like Mosquitto
// 2.0, a file others may read is loaded, with a warning.
void warn_if_readable_by_others(const std::string& path, const char* what) {
    struct stat st {};
    if (::stat(path.c_str(), &st) == 0 && (st.st_mode & (S_IROTH | S_IWOTH)) != 0) {
        logging::write(log_level::warn,
                       "a secrets file is readable or writable by every user; chmod 600 it",
                       {{"option", what}, {"file", path}});
    }
}

std::string read_file(const std::string& path, const char* what) {
    std::ifstream in(path, std::ios::binary);
    if (!in) throw std::runtime_error(std::string("cannot read ") + what + " '" + path + "'");
    std::ostringstream content;
    content << in.rdbuf();
    return content.str();
}

// Reads and parses one of the line-oriented files (`Parsed::parse` gives the value or the
// problems); throws naming `what`, the file and each problem with its line number.
template <class Parsed>
Parsed parse_file(const std::string& path, const char* option, const char* what) {
    auto parsed = Parsed::parse(read_file(path, option));
    if (auto* errors = std::get_if<std::vector<line_error>>(&parsed)) {
        std::string text = std::string("invalid ") + what + " " + path + ":";
        for (const auto& e : *errors)
            text += "\n  " + e.to_string();
        throw std::runtime_error(text);
    }
    return std::get<Parsed>(std::move(parsed));
}

}  // namespace

std::shared_ptr<const security_policy> load_security(const security_files& files) {
    auto policy = std::make_shared<security_policy>();

    std::shared_ptr<const password_file> passwords;
    if (!files.password_file.empty()) {
        warn_if_readable_by_others(files.password_file, "--password-file");
        passwords = std::make_shared<const password_file>(
            parse_file<password_file>(files.password_file, "--password-file", "password file"));
    }

    std::shared_ptr<const jwt_verifier> jwt;
    std::string secret = files.jwt_secret;
    if (!files.jwt_secret_file.empty()) {
        secret = read_file(files.jwt_secret_file, "--jwt-secret-file");
        while (!secret.empty() && (secret.back() == '\n' || secret.back() == '\r'))
            secret.pop_back();
    }
    if (!secret.empty() || !files.jwt_public_key.empty() || !files.jwt_jwks.empty()) {
        auto verifier = std::make_shared<jwt_verifier>();
        if (!secret.empty()) {
            if (auto problem = verifier->accept_hs256(secret)) {
                const char* source =
                    files.jwt_secret_file.empty() ? "--jwt-secret" : "--jwt-secret-file";
                throw std::runtime_error(std::string(source) + ": " + *problem);
            }
        }
        if (!files.jwt_public_key.empty()) {
            const std::string pem = read_file(files.jwt_public_key, "--jwt-public-key");
            auto rsa = verifier->accept_rs256(pem);
            if (rsa) {
                if (auto ec = verifier->accept_es256(pem)) {
                    throw std::runtime_error("--jwt-public-key " + files.jwt_public_key +
                                             ": neither an RS256 key (" + *rsa +
                                             ") nor an ES256 key (" + *ec + ")");
                }
            }
        }
        if (!files.jwt_jwks.empty()) {
            if (auto problem = verifier->accept_jwks(read_file(files.jwt_jwks, "--jwt-jwks")))
                throw std::runtime_error("--jwt-jwks " + files.jwt_jwks + ": " + *problem);
        }
        jwt = std::move(verifier);
    }

    policy->auth = authenticator(std::move(passwords), std::move(jwt), files.client_certificates,
                                 files.allow_anonymous || !files.any_credentials());

    if (!files.acl_file.empty()) {
        policy->rules = parse_file<acl>(files.acl_file, "--acl-file", "ACL file");
    }

    if (!files.revoked_file.empty()) {
        policy->revoked =
            parse_file<revocation_list>(files.revoked_file, "--revoked-file", "revocation file");
    }

    if (!files.device_keys.empty()) {
        warn_if_readable_by_others(files.device_keys, "--device-keys");
        policy->signing_keys =
            parse_file<device_keys>(files.device_keys, "--device-keys", "device key file");
    }
    return policy;
}

}  // namespace mqttws
