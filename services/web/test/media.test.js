import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mediaOf, kindOf } from '../sdk/imkube.js';

test('kindOf picks the message kind from the content type', () => {
  assert.equal(kindOf('image/png'), 'image');
  assert.equal(kindOf('IMAGE/JPEG'), 'image');
  assert.equal(kindOf('image/svg+xml'), 'file'); // not shown inline
  assert.equal(kindOf('audio/ogg'), 'audio');
  assert.equal(kindOf('video/mp4'), 'video');
  assert.equal(kindOf('application/pdf'), 'file');
  assert.equal(kindOf(''), 'file');
});

test('mediaOf reads the body of media messages only', () => {
  const body = { objectKey: 'm/u1/abc', name: 'a.png', size: 3, contentType: 'image/png', thumbKey: 'm/u1/abc.thumb' };
  assert.deepEqual(mediaOf({ kind: 'image', body: JSON.stringify(body) }), body);
  assert.equal(mediaOf({ kind: 'text', body: JSON.stringify(body) }), null);
  assert.equal(mediaOf({ kind: 'file', body: 'not json' }), null);
  assert.equal(mediaOf({ kind: 'file', body: '{"name":"no key"}' }), null);
});

test('uploadAndSend needs a RestClient on the client', async () => {
  const { uploadAndSend } = await import('../sdk/imkube.js');
  await assert.rejects(uploadAndSend(/** @type {any} */ ({ opts: {} }), new Blob(['x']), { to: { user: 'u2' } }), TypeError);
});
