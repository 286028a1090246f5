/// <reference path="../../keyhook.d.ts" />
// @ts-check
// context is read-only (docs/scripts.md, "context"): the declarations
// must make a type checker refuse this.

/**
 * @param {TokenArg} token
 * @param {ScriptContext} context
 */
function modifyAccessToken(token, context) {
  context.config.realm = "x";
  context.phase = "token";
  context.client.grant_types.push("password");
  return true;
}
