/// <reference path="../../scripts/keyhook.d.ts" />
// Update-token script for a gateway that exchanges users' tokens
// (RFC 8693, docs/token-exchange.md): only tokens that stand for a user,
// and read-only scopes for the audience named in the script's config.
// The policy of the client still bounds what the script leaves.
function modifyTokenExchange(request, context) {
  if (!request.subject.username) {
    context.log("refused: the subject token has no user");
    return false;
  }
  var readOnly = context.config.read_only_audience || "reports";
  if (request.audience.indexOf(readOnly) >= 0) {
    request.scope = request.scope.split(" ").filter(function (s) {
      return /\.read$/.test(s);
    }).join(" ");
  }
  return true;
}
