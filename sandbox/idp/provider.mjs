// A demo and test identity provider: one issuer of the OpenID Certified `oidc-provider`
// package on 127.0.0.1, standing in for a council's Microsoft Entra ID or ADFS.
//
//   node sandbox/idp/provider.mjs CONFIG.json
//
// CONFIG: {"name", "port", "keys_file", "clients": [{client_id, client_secret, redirect_uris,
// post_logout_redirect_uris}], "users": {"<email>": {email, email_verified, name, groups}}}.
// The signing key is made on first start and kept in keys_file, so a restart signs alike.
//
// People sign in on a plain login page (e-mail address and any password; an address the
// issuer does not know is refused) and consent is implied. A small control API for tests,
// on loopback only, changes people and clients while it runs and mints ID tokens with the
// issuer's own key:
//   POST /_test/users/<email>                       {claims}       create or change a person
//   POST /_test/clients/<id>/redirect_uris          {"uri": ...}   allow a redirect URI
//   POST /_test/clients/<id>/post_logout_redirect_uris {"uri": ...}
//   POST /_test/id-token  {client_id, email, nonce, expires_in}   → {"id_token": ...}
// Prints "READY <issuer>" when it listens.
import { generateKeyPairSync, randomBytes } from 'node:crypto';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { pathToFileURL } from 'node:url';

const config = JSON.parse(readFileSync(process.argv[2], 'utf8'));
// oidc-provider is installed outside the repository (scripts/ensure-idp.sh): OIDC_PROVIDER_HOME.
const home = process.env.OIDC_PROVIDER_HOME;
const require = createRequire(`${home}/package.json`);
const { default: Provider } = await import(pathToFileURL(require.resolve('oidc-provider')).href);

const issuer = `http://127.0.0.1:${config.port}`;
const users = new Map(Object.entries(config.users || {}));
const clients = new Map((config.clients || []).map((c) => [c.client_id, {
  grant_types: ['authorization_code'],
  response_types: ['code'],
  token_endpoint_auth_method: 'client_secret_basic',
  post_logout_redirect_uris: [],
  ...c,
}]));

function signingKey() {
  if (config.keys_file && existsSync(config.keys_file)) {
    return JSON.parse(readFileSync(config.keys_file, 'utf8'));
  }
  const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  const jwk = { ...privateKey.export({ format: 'jwk' }), kid: `${config.name}-${randomBytes(6).toString('hex')}`,
    use: 'sig', alg: 'RS256' };
  if (config.keys_file) writeFileSync(config.keys_file, JSON.stringify(jwk), { mode: 0o600 });
  return jwk;
}

// Everything in memory; clients come from the mutable map above, so tests can add redirect URIs.
const stores = new Map();
class MemoryAdapter {
  constructor(model) {
    this.model = model;
    if (!stores.has(model)) stores.set(model, new Map());
    this.store = stores.get(model);
  }

  async upsert(id, payload, expiresIn) {
    this.store.set(id, { payload, expiresAt: expiresIn ? Date.now() + expiresIn * 1000 : null });
  }

  async find(id) {
    if (this.model === 'Client') return clients.get(id);
    const entry = this.store.get(id);
    if (!entry || (entry.expiresAt && entry.expiresAt < Date.now())) return undefined;
    return entry.payload;
  }

  async findByUid(uid) {
    for (const entry of this.store.values()) if (entry.payload.uid === uid) return entry.payload;
    return undefined;
  }

  async findByUserCode(userCode) {
    for (const entry of this.store.values()) if (entry.payload.userCode === userCode) return entry.payload;
    return undefined;
  }

  async consume(id) {
    const entry = this.store.get(id);
    if (entry) entry.payload.consumed = Math.floor(Date.now() / 1000);
  }

  async destroy(id) { this.store.delete(id); }

  async revokeByGrantId(grantId) {
    for (const [id, entry] of this.store) if (entry.payload.grantId === grantId) this.store.delete(id);
  }
}

const page = (title, body) => `<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">
<title>${title}</title><style>body{font-family:sans-serif;max-width:28rem;margin:3rem auto}
label,input,button{display:block;margin:.4rem 0;font-size:1rem}input{width:100%}</style></head>
<body><h1>${title}</h1>${body}</body></html>`;
const escape = (s) => String(s).replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);

const provider = new Provider(issuer, {
  adapter: MemoryAdapter,
  jwks: { keys: [signingKey()] },
  cookies: { keys: [randomBytes(16).toString('hex')] },
  findAccount: async (ctx, id) => {
    const user = users.get(id);
    if (!user) return undefined;
    return {
      accountId: id,
      claims: async () => ({ sub: id, email: user.email ?? id, email_verified: user.email_verified ?? true,
        name: user.name ?? id, groups: user.groups ?? [] }),
    };
  },
  claims: { openid: ['sub'], email: ['email', 'email_verified'], profile: ['name'], groups: ['groups'] },
  scopes: ['openid', 'email', 'profile', 'groups'],
  conformIdTokenClaims: false, // the e-mail, name and groups go in the ID token itself
  pkce: { required: () => true },
  features: {
    devInteractions: { enabled: false },
    rpInitiatedLogout: {
      enabled: true,
      logoutSource: async (ctx, form) => {
        ctx.body = page(`Sign out of ${config.name}?`, `${form}<button form="op.logoutForm" name="logout"
          value="yes" type="submit">Sign out</button>`);
      },
      postLogoutSuccessSource: async (ctx) => { ctx.body = page('Signed out', '<p>You have signed out.</p>'); },
    },
  },
  interactions: { url: (ctx, interaction) => `/interaction/${interaction.uid}` },
  renderError: async (ctx, out) => {
    ctx.type = 'html';
    ctx.body = page('Sign-in error', `<p id="error">${escape(out.error)}: ${escape(out.error_description || '')}</p>`);
  },
  ttl: { IdToken: 3600, AccessToken: 3600, AuthorizationCode: 120, Interaction: 600, Session: 3600, Grant: 3600 },
});

async function readBody(ctx) {
  const chunks = [];
  for await (const chunk of ctx.req) chunks.push(chunk);
  const text = Buffer.concat(chunks).toString('utf8');
  return (ctx.get('content-type') || '').includes('json') ? JSON.parse(text || '{}')
    : Object.fromEntries(new URLSearchParams(text));
}

provider.use(async (ctx, next) => {
  const interaction = ctx.path.match(/^\/interaction\/([\w-]+)(\/login)?$/);
  if (interaction && ctx.method === 'GET' && !interaction[2]) {
    const details = await provider.interactionDetails(ctx.req, ctx.res);
    const hint = details.params.login_hint || '';
    ctx.type = 'html';
    ctx.body = page(`Sign in to ${config.name}`, `<form method="post" action="/interaction/${details.uid}/login">
      <label for="email">E-mail address</label><input id="email" name="email" type="email" required value="${escape(hint)}">
      <label for="password">Password</label><input id="password" name="password" type="password" required>
      <button id="sign-in" type="submit">Sign in</button></form>`);
    return;
  }
  if (interaction && ctx.method === 'POST' && interaction[2]) {
    const details = await provider.interactionDetails(ctx.req, ctx.res);
    const form = await readBody(ctx);
    const email = String(form.email || '').trim().toLowerCase();
    if (!users.has(email) || !form.password) {
      ctx.status = 401;
      ctx.type = 'html';
      ctx.body = page('Not signed in', `<p id="error">${escape(config.name)} does not know ${escape(email)}.</p>`);
      return;
    }
    const grant = new provider.Grant({ accountId: email, clientId: details.params.client_id });
    grant.addOIDCScope(String(details.params.scope || 'openid'));
    const grantId = await grant.save();
    await provider.interactionFinished(ctx.req, ctx.res, { login: { accountId: email }, consent: { grantId } },
      { mergeWithLastSubmission: false });
    return;
  }
  if (ctx.path.startsWith('/_test/') && ctx.method === 'POST') {
    const body = await readBody(ctx);
    let match = ctx.path.match(/^\/_test\/users\/(.+)$/);
    if (match) {
      const email = decodeURIComponent(match[1]).toLowerCase();
      users.set(email, { email, ...(users.get(email) || {}), ...body });
      ctx.body = users.get(email);
      return;
    }
    match = ctx.path.match(/^\/_test\/clients\/([^/]+)\/(redirect_uris|post_logout_redirect_uris)$/);
    if (match && clients.has(match[1])) {
      const list = clients.get(match[1])[match[2]];
      if (!list.includes(body.uri)) list.push(body.uri);
      ctx.body = clients.get(match[1]);
      return;
    }
    if (ctx.path === '/_test/id-token') {
      const client = await provider.Client.find(body.client_id) || new provider.Client({
        client_id: body.client_id, client_secret: 'not-registered', redirect_uris: ['http://127.0.0.1/'],
        token_endpoint_auth_method: 'client_secret_basic' });
      const email = String(body.email).toLowerCase();
      const user = users.get(email) || { email };
      const token = new provider.IdToken({ sub: email }, { client });
      // Without a request the scope mask would drop these: set them as extra claims.
      const claims = { sub: email, email, email_verified: user.email_verified ?? true, name: user.name ?? email,
        groups: user.groups ?? [], ...(body.claims || {}) };
      for (const [key, value] of Object.entries(claims)) token.set(key, value);
      if (body.nonce) token.set('nonce', body.nonce);
      const expiresIn = Number(body.expires_in ?? 300);
      ctx.body = { id_token: await token.issue({ use: 'idtoken', expiresAt: Math.floor(Date.now() / 1000) + expiresIn }) };
      return;
    }
    ctx.status = 404;
    return;
  }
  await next();
});

provider.listen(config.port, '127.0.0.1', () => { console.log(`READY ${issuer}`); });
