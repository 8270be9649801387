// What the bridge reads from a WebSocket upgrade request and a peer's address: credentials from
// the Authorization header or the URL, the client a trusted proxy speaks for (X-Forwarded-For),
// and the IP address of a "host:port" peer. All of it comes from the network.
// Thread safety: pure functions; safe from any thread.
#pragma once

#include <string>
#include <string_view>

#include "core/authenticator.hpp"

namespace mqttws {

// Credentials from the upgrade request: "Authorization: Bearer <token>" or "Basic <base64
// user:password>" (scheme names in any case), else "token=<t>" in the URL's query string
// (browsers cannot set headers), percent-decoded. Anything else: no credentials.
handshake_credentials request_credentials(std::string_view authorization,
                                          std::string_view resource);

// The client a proxy speaks for: the last address of an X-Forwarded-For header (the one the
// proxy itself added), without surrounding spaces. Empty if there is none.
std::string forwarded_client(std::string_view x_forwarded_for);

// "1.2.3.4:5678" / "[::1]:5678" → the address without the port. An address without a port
// ("1.2.3.4", "2001:db8::1", as X-Forwarded-For gives them) stays as it is.
std::string address_without_port(std::string_view remote_address);

}  // namespace mqttws
