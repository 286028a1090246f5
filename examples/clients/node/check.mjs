// check.mjs: runs openid-client (v6), unmodified, against a keyhook server
// and prints one line per check; exits 1 when any check fails.
//
//   KEYHOOK_ISSUER=http://127.0.0.1:8080 \
//   BASIC_CLIENT_ID=... BASIC_CLIENT_SECRET=... \      client_secret_basic
//   POST_CLIENT_ID=... POST_CLIENT_SECRET=... \        client_secret_post
//   ED25519_CLIENT_ID=... ED25519_KEY='{private JWK}' \ private_key_jwt, Ed25519
//   ES256_CLIENT_ID=... ES256_KEY='{private JWK}' \     private_key_jwt, ES256
//   PASSWORD_CLIENT_ID=... PASSWORD_CLIENT_SECRET=... \ password and refresh_token grants
//   USERNAME=... PASSWORD=... \
//   node check.mjs
//
// The issuer may also be the first argument. The clients need the scope
// given by SCOPE (default "api"); with "openid" in it, the ID tokens of the
// password and refresh grants are checked too. An http issuer is allowed
// (allowInsecureRequests) only on a loopback address.
import * as client from 'openid-client'

const env = process.env
const issuer = new URL(process.argv[2] ?? env.KEYHOOK_ISSUER ?? 'http://127.0.0.1:8080')
const scope = env.SCOPE ?? 'api'
const loopback = ['127.0.0.1', 'localhost', '[::1]'].includes(issuer.hostname)
const execute = issuer.protocol === 'http:' && loopback ? [client.allowInsecureRequests] : []

let failures = 0
let checks = 0

async function check(name, fn) {
  checks++
  try {
    const detail = await fn()
    console.log(`ok    ${name}${detail ? ` (${detail})` : ''}`)
  } catch (err) {
    failures++
    const body = err?.cause && typeof err.cause === 'object' ? ` ${JSON.stringify(err.cause)}` : ''
    console.log(`FAIL  ${name}: ${err?.message ?? err}${body}`)
  }
}

function need(name) {
  const v = env[name]
  if (!v) throw new Error(`${name} is not set`)
  return v
}

function assert(cond, msg) {
  if (!cond) throw new Error(msg)
}

// The last client assertion sent, to check which alg openid-client chose.
let lastAssertion
const recordingFetch = (url, options) => {
  const body = options?.body
  if (body instanceof URLSearchParams) lastAssertion = body.get('client_assertion') ?? undefined
  else if (typeof body === 'string') lastAssertion = new URLSearchParams(body).get('client_assertion') ?? undefined
  return fetch(url, options)
}

function assertionHeader() {
  assert(lastAssertion, 'no client_assertion was sent')
  return JSON.parse(Buffer.from(lastAssertion.split('.')[0], 'base64url').toString())
}

// config makes a Configuration for one client from the discovered metadata.
function config(server, clientId, auth) {
  const c = new client.Configuration(server, clientId, undefined, auth)
  for (const f of execute) f(c)
  c[client.customFetch] = recordingFetch
  return c
}

async function importKey(jwkText, algorithm) {
  const jwk = JSON.parse(jwkText)
  const key = await crypto.subtle.importKey('jwk', jwk, algorithm, false, ['sign'])
  return { key, kid: jwk.kid }
}

async function expectOAuthError(promise, code) {
  try {
    await promise
  } catch (err) {
    if (err instanceof client.WWWAuthenticateChallengeError) {
      // A 401 with a challenge (invalid_client after Basic, RFC 6749
      // §5.2): the library reports the challenge; the body has the code.
      const body = await err.response.json()
      assert(body.error === code, `want ${code}, got ${body.error}: ${body.error_description}`)
      return `${err.status} ${body.error}, challenge ${err.cause.map((c) => c.scheme).join(' ')}`
    }
    assert(err instanceof client.ResponseBodyError, `want a ${code} error response, got ${err}`)
    assert(err.error === code, `want ${code}, got ${err.error}: ${err.error_description}`)
    return `${err.status} ${err.error}`
  }
  throw new Error(`want ${code}, the request succeeded`)
}

function checkToken(tok, wantScope) {
  assert(typeof tok.access_token === 'string' && tok.access_token.length >= 43, 'no access_token')
  assert(tok.token_type?.toLowerCase() === 'bearer', `token_type ${tok.token_type}`)
  assert(tok.expires_in > 0, `expires_in ${tok.expires_in}`)
  assert(tok.scope === wantScope, `scope ${tok.scope}, want ${wantScope}`)
}

let server
await check('discovery', async () => {
  const discovered = await client.discovery(issuer, need('BASIC_CLIENT_ID'), undefined,
    client.ClientSecretBasic(need('BASIC_CLIENT_SECRET')), { execute })
  server = discovered.serverMetadata()
  assert(server.issuer === issuer.href.replace(/\/$/, ''), `issuer ${server.issuer}`)
  for (const k of ['token_endpoint', 'introspection_endpoint', 'revocation_endpoint', 'jwks_uri']) {
    assert(server[k]?.startsWith(server.issuer), `${k} ${server[k]}`)
  }
  assert(discovered.serverMetadata().supportsPKCE(), 'PKCE S256 not listed')
  const algs = server.token_endpoint_auth_signing_alg_values_supported ?? []
  assert(algs.includes('Ed25519') && algs.includes('ES256'), `assertion algs ${algs}`)
  return server.issuer
})
if (!server) {
  console.log('FAIL  nothing else can run without discovery')
  process.exit(1)
}

const basic = config(server, need('BASIC_CLIENT_ID'), client.ClientSecretBasic(need('BASIC_CLIENT_SECRET')))
const post = config(server, need('POST_CLIENT_ID'), client.ClientSecretPost(need('POST_CLIENT_SECRET')))

let basicToken
await check('client_credentials with client_secret_basic', async () => {
  basicToken = await client.clientCredentialsGrant(basic, { scope })
  checkToken(basicToken, scope)
  assert(basicToken.refresh_token === undefined, 'client_credentials gave a refresh token')
})

await check('client_credentials with client_secret_post', async () => {
  checkToken(await client.clientCredentialsGrant(post, { scope }), scope)
})

await check('a scope not allowed is invalid_scope', () =>
  expectOAuthError(client.clientCredentialsGrant(basic, { scope: `${scope} not-allowed` }), 'invalid_scope'))

await check('a wrong secret is invalid_client', () =>
  expectOAuthError(client.clientCredentialsGrant(config(server, need('BASIC_CLIENT_ID'), client.ClientSecretBasic('wrong')), { scope }), 'invalid_client'))

for (const [name, idVar, keyVar, algorithm, wantAlg] of [
  ['Ed25519', 'ED25519_CLIENT_ID', 'ED25519_KEY', { name: 'Ed25519' }, 'Ed25519'],
  ['ES256', 'ES256_CLIENT_ID', 'ES256_KEY', { name: 'ECDSA', namedCurve: 'P-256' }, 'ES256'],
]) {
  await check(`client_credentials with private_key_jwt ${name}`, async () => {
    const key = await importKey(need(keyVar), algorithm)
    const c = config(server, need(idVar), client.PrivateKeyJwt(key))
    lastAssertion = undefined
    checkToken(await client.clientCredentialsGrant(c, { scope }), scope)
    const header = assertionHeader()
    assert(header.alg === wantAlg, `assertion alg ${header.alg}, want ${wantAlg}`)
    // A second token needs a fresh assertion (jti), which the library makes.
    checkToken(await client.clientCredentialsGrant(c, { scope }), scope)
    return `alg ${header.alg}`
  })
}

await check('introspection of an active token', async () => {
  assert(basicToken, 'no token to introspect')
  const res = await client.tokenIntrospection(basic, basicToken.access_token)
  assert(res.active === true, `active ${res.active}`)
  assert(res.client_id === need('BASIC_CLIENT_ID'), `client_id ${res.client_id}`)
  assert(res.scope === scope, `scope ${res.scope}`)
  assert(res.token_type === 'Bearer', `token_type ${res.token_type}`)
  assert(res.exp > Date.now() / 1000, `exp ${res.exp}`)
})

await check('revocation', async () => {
  assert(basicToken, 'no token to revoke')
  await client.tokenRevocation(basic, basicToken.access_token, { token_type_hint: 'access_token' })
  const res = await client.tokenIntrospection(post, basicToken.access_token)
  assert(res.active === false && Object.keys(res).length === 1, `after revocation: ${JSON.stringify(res)}`)
})

await check('password grant and refresh_token rotation', async () => {
  const pw = config(server, need('PASSWORD_CLIENT_ID'), client.ClientSecretBasic(need('PASSWORD_CLIENT_SECRET')))
  const first = await client.genericGrantRequest(pw, 'password', { username: need('USERNAME'), password: need('PASSWORD'), scope })
  checkToken(first, scope)
  assert(first.refresh_token, 'the password grant gave no refresh token')
  const second = await client.refreshTokenGrant(pw, first.refresh_token)
  checkToken(second, scope)
  assert(second.refresh_token && second.refresh_token !== first.refresh_token, 'the refresh token did not rotate')
  if (scope.split(' ').includes('openid')) {
    // The library has validated the ID tokens (iss, aud, exp, iat, sub).
    for (const t of [first, second]) {
      assert(t.claims()?.sub === need('USERNAME'), `ID token sub ${t.claims()?.sub}`)
    }
  }
  const third = await client.refreshTokenGrant(pw, second.refresh_token, { scope })
  checkToken(third, scope)
  // The ended refresh token is refused, and that ends its family.
  await expectOAuthError(client.refreshTokenGrant(pw, first.refresh_token), 'invalid_grant')
  const res = await client.tokenIntrospection(pw, third.access_token)
  assert(res.active === false, 'a reused refresh token left its family active')
})

console.log(`${checks - failures}/${checks} checks passed against ${issuer.href}`)
process.exitCode = failures === 0 ? 0 : 1
