/// <reference path="../../scripts/keyhook.d.ts" />
// Registration script (type: registration): a policy for dynamically
// registered clients (docs/registration.md). Every enabled registration
// script runs on each registration and each RFC 7592 update.
//
// - Client names carry the initial access token's label, so an admin
//   can tell whose client is whose: "partner-acme: Reports".
// - Redirect URIs must be on a domain of config.allowed_domains
//   (comma-separated), when set.
// - Scopes beyond config.max_scope (space-separated), when set, are
//   dropped rather than refused.
function validateRegistration(metadata, context) {
  var reg = context.registration;
  var prefix = (reg.initial_token_label || (reg.open ? "open" : "unnamed")) + ": ";
  var name = metadata.client_name || "unnamed client";
  if (name.indexOf(prefix) !== 0) {
    metadata.client_name = prefix + name;
  }

  var domains = (context.config.allowed_domains || "").split(",").filter(Boolean);
  if (domains.length > 0) {
    var uris = metadata.redirect_uris || [];
    for (var i = 0; i < uris.length; i++) {
      var host = String(uris[i]).replace(/^[a-z][a-z0-9+.-]*:\/\//i, "").split(/[\/:?]/)[0].toLowerCase();
      var ok = domains.some(function (d) {
        return host === d || host.slice(-(d.length + 1)) === "." + d;
      });
      if (!ok) {
        context.log("refused redirect URI", uris[i]);
        return false; // 400 invalid_client_metadata
      }
    }
  }

  if (context.config.max_scope && metadata.scope) {
    var allowed = context.config.max_scope.split(" ");
    metadata.scope = metadata.scope.split(" ").filter(function (s) {
      return allowed.indexOf(s) >= 0;
    }).join(" ");
  }
  return true;
}
