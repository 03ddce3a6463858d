#!/usr/bin/env node
// CommonJS (bin/package.json): an ES module entry costs every command about 9 ms of Node's ES loader.
"use strict";
require("./load-cli.js").loadCli();
