// Our driver for the real Node spark-protocol server (particle-iot/spark-protocol 2c745e7):
// start its DeviceServer on PORT with the server key PEM and a keys directory, wait for
// the device CORE_ID to say Hello, flash FILE with the server's own Flasher (stop-and-wait,
// 256-byte chunks), print one line "done" or "failed: ..." and exit.
//
// usage: node flash_one.js SPARK_PROTOCOL_DIR PORT SERVER_KEY_PEM KEYS_DIR CORE_ID FILE
'use strict';
const path = require('path');
const fs = require('fs');
const [dir, port, keyPem, keysDir, coreId, file] = process.argv.slice(2);
const settings = require(path.join(dir, 'settings.js'));
settings.PORT = Number(port);
settings.serverKeyFile = keyPem;
settings.coreKeysDir = keysDir;
const DeviceServer = require(path.join(dir, 'server', 'DeviceServer.js'));
const server = new DeviceServer({ coreKeysDir: keysDir });
server.start();
const binary = fs.readFileSync(file);
const deadline = Date.now() + 60000;
const timer = setInterval(() => {
  const cores = global.cores || {};
  const core = Object.values(cores).find((c) => c.coreID === coreId && c.getHexCoreID);
  if (core && !core._sfStarted) {
    core._sfStarted = true;
    const sender = 'sparkflash-test';
    core.on(sender, (_s, response) => {
      if (response.message === 'Update done') { console.log('done'); process.exit(0); }
      if (response.message && response.message.indexOf('failed') >= 0) { console.log('failed: ' + response.message); process.exit(1); }
    });
    core.flashCore(binary, sender);
  }
  if (Date.now() > deadline) { console.log('failed: timeout'); process.exit(2); }
}, 100);
