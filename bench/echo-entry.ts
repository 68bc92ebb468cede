// The suite's echo backend: `wsgate echo` in a process of its own, through tsx
// so the suite does not depend on a build. Same arguments as `wsgate echo`.
import { runEcho } from '../src/cli/echo.js';

process.exitCode = await runEcho(process.argv.slice(2));
