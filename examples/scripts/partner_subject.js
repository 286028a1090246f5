/// <reference path="../../scripts/keyhook.d.ts" />
// JWT bearer grant (docs/jwt-bearer.md): accept a partner's assertions
// only at the assurance level config.require_acr asks for, and map the
// partner's subject to a local one: config["map.<sub>"] when set, else
// "<trusted issuer>:<sub>", so that two issuers' subjects never meet.
function validateAssertion(assertion, context) {
  var acr = context.config.require_acr;
  if (acr && assertion.claims.acr !== acr) {
    return false;
  }
  var local = context.config["map." + assertion.subject];
  assertion.subject = local || assertion.trusted_issuer + ":" + assertion.subject;
  return true;
}
