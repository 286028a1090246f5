/// <reference path="../../scripts/keyhook.d.ts" />
// OneWelcome-style introspection: adds user_details (from the user's
// claims) and amr (how the user authenticated) to active tokens, plus the
// mobile-app fields OneWelcome answers with (empty for non-app clients).
function modifyResponse(response, context) {
  if (context.user) {
    var c = context.user.claims;
    response.user_details = {
      email: c.email || "",
      name: c.name || "",
      given_name: c.given_name || "",
      family_name: c.family_name || ""
    };
  }
  response.amr = [context.token.grant_type === "client_credentials" ? "IMPLICIT" : "DEFAULT"];
  response.app_identifier = context.client.attributes.app_identifier || "";
  response.app_platform = context.client.attributes.app_platform || "";
  response.app_version = context.client.attributes.app_version || "";
  return true;
}
