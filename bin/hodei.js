#!/usr/bin/env node
import { loadCli } from "./load-cli.js";

loadCli();
