/// <reference path="../../scripts/keyhook.d.ts" />
// Update-token script: a custom claim on the access token and a shorter
// access token lifetime, both from the script's config.
function modifyAccessToken(token, context) {
  token.claims.department = context.config.department || "engineering";
  // A request parameter of our own: ?audience=... narrows aud.
  if (context.request.params.audience) {
    token.claims.aud = context.request.params.audience;
  }
  return true;
}

function getAccessTokenLifetimeInSeconds(context) {
  return Number(context.config.access_token_lifetime) || 0;
}
