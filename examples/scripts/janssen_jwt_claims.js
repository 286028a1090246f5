/// <reference path="../../scripts/keyhook.d.ts" />
// Janssen-style "run introspection script before JWT creation": for a
// client with access_token_as_jwt and
// run_introspection_script_before_jwt_creation, what this adds to the
// would-be introspection answer becomes claims of the JWT access token.
// At introspection time it adds the same fields to the answer.
function modifyResponse(response, context) {
  response.tenant = context.client.attributes.tenant || "default";
  response.roles = (context.config.roles || "reader").split(",");
  if (context.phase === "jwt_creation") {
    context.log("adding tenant claims to JWT for", context.client.client_id);
  }
  return true;
}
