/// <reference path="../../scripts/keyhook.d.ts" />
// IBM Liberty-style introspection: grant_type, realmName,
// uniqueSecurityName and tokenType, as Liberty's OIDC provider answers.
function modifyResponse(response, context) {
  response.grant_type = context.token.grant_type;
  response.realmName = context.config.realm || "BasicRealm";
  response.uniqueSecurityName = context.token.username || context.token.subject;
  response.tokenType = "Bearer";
  return true;
}
