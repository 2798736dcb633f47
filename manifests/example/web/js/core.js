// Fills in the device id and firmware version served by the Core at /info.
fetch("/info").then((r) => r.json()).then((info) => {
  document.getElementById("device").textContent = info.device;
  document.getElementById("version").textContent = info.version;
});
