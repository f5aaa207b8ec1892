// Drive a GTP engine the way Sabaki does, through Sabaki's own GTP library (@sabaki/gtp):
// ControllerStateTracker syncs komi, board size and move history; genmove; lz-analyze and kata-analyze
// streamed through a subscriber and parsed by Sabaki's rules; a new command stops the analysis.
// Usage: node drive_engine.js ENGINE_PATH [ARGS...]. Prints one JSON object; exits non-zero on a failed check.
const {Command, ControllerStateTracker} = require('@sabaki/gtp')

const [enginePath, ...engineArgs] = process.argv.slice(2)
const checks = []
function check(ok, what) {
  checks.push({ok: Boolean(ok), what})
}

// Sabaki's reading of an analysis line: "info" clauses, key-value pairs, then "pv" and its moves to the end.
function parseAnalysis(line, integerWinrates) {
  return line
    .split(/\s*info\s+/)
    .slice(1)
    .map(clause => {
      const tokens = clause.trim().split(/\s+/)
      const pvAt = tokens.indexOf('pv')
      const fields = {}
      for (let i = 0; i + 1 < (pvAt < 0 ? tokens.length : pvAt); i += 2) fields[tokens[i]] = tokens[i + 1]
      const winrate = Number(fields.winrate)
      return {
        move: fields.move,
        visits: Number(fields.visits),
        winrate: integerWinrates ? winrate / 100 : winrate * 100,
        scoreLead: fields.scoreLead == null ? null : Number(fields.scoreLead),
        pv: pvAt < 0 ? [] : tokens.slice(pvAt + 1),
        winrateIsInteger: /^-?\d+$/.test(fields.winrate || '')
      }
    })
}

// Start an analysis command, collect its updates for `ms` milliseconds, then stop it with `name` as Sabaki does.
async function analyse(tracker, command, ms) {
  const updates = []
  const done = tracker.controller.sendCommand(command, ({line}) => {
    if (line.startsWith('info ')) updates.push(line)
  })
  await new Promise(resolve => setTimeout(resolve, ms))
  const stop = await tracker.controller.sendCommand({name: 'name'})
  const response = await done
  return {updates, response, stop}
}

async function main() {
  const tracker = ControllerStateTracker.fromController(enginePath, engineArgs)
  const controller = tracker.controller
  controller.start()
  const result = {}
  try {
    const version = await controller.sendCommand({name: 'protocol_version'})
    check(!version.error && version.content === '2', 'protocol_version is 2')
    check(await tracker.knowsCommand('lz-analyze'), 'knows lz-analyze')
    check(await tracker.knowsCommand('kata-analyze'), 'knows kata-analyze')

    const history = ['B E5', 'W C3', 'B G7'].map(s => Command.fromString(`play ${s}`))
    await tracker.sync({komi: 7.5, boardsize: [9, 9], history})
    check(tracker.state.history.length === 3, 'state synced: 3 moves')

    const genmove = await tracker.queueCommand({name: 'genmove', args: ['W']})
    result.genmove = genmove.content
    check(!genmove.error && /^([A-HJ][1-9]|pass|resign)$/i.test(genmove.content), 'genmove W answers a vertex')

    // Sabaki takes a move back by syncing to a shorter history (the tracker sends undo).
    await tracker.sync({history: history.slice(0, 2)})
    const board = await controller.sendCommand({name: 'showboard'})
    check(!board.error && board.content.includes('9 . . . . . . . . . 9'), 'undo synced: row 9 empty again')

    const lz = await analyse(tracker, {name: 'lz-analyze', args: ['B', '10']}, 1500)
    const lzParsed = lz.updates.map(line => parseAnalysis(line, true))
    result.lz = {updates: lz.updates.length, first: lzParsed[0] || null}
    check(!lz.response.error, 'lz-analyze accepted')
    check(lz.updates.length >= 1, 'lz-analyze streamed info lines')
    check(lzParsed.every(ms => ms.length && ms.every(m => m.winrateIsInteger && m.visits >= 0 && m.pv.length)),
          'lz-analyze: integer win rates, visits, pv')
    check(!lz.stop.error && lz.stop.content === 'gogame', 'the next command stopped the analysis and was answered')

    const kata = await analyse(tracker, {name: 'kata-analyze', args: ['B', '10', 'ownership', 'true']}, 1500)
    const kataParsed = kata.updates.map(line => parseAnalysis(line.split(' ownership ')[0], false))
    result.kata = {updates: kata.updates.length, first: kataParsed[0] || null}
    check(kata.updates.length >= 1, 'kata-analyze streamed info lines')
    check(kataParsed.every(ms => ms.length && ms.every(m => !m.winrateIsInteger && m.winrate >= 0 && m.winrate <= 100)),
          'kata-analyze: float win rates')
    check(kataParsed.every(ms => ms.every(m => Number.isFinite(m.scoreLead))), 'kata-analyze: scoreLead numbers')
    check(kata.updates.every(line => line.includes(' ownership ') &&
                             line.split(' ownership ')[1].trim().split(/\s+/).length === 81),
          'kata-analyze: 81 ownership values')

    const score = await tracker.queueCommand({name: 'final_score'})
    check(!score.error && /^(B\+|W\+|0)/.test(score.content), 'final_score')
    const illegal = await tracker.queueCommand({name: 'play', args: ['B', 'E5']})
    check(illegal.error && illegal.content === 'illegal move', 'an occupied point is an illegal move')
    const bogus = await tracker.queueCommand({name: 'frobnicate'})
    check(bogus.error && bogus.content === 'unknown command', 'unknown command')
  } catch (err) {
    check(false, `exception: ${err && err.stack}`)
  } finally {
    await controller.stop()
  }
  result.checks = checks
  console.log(JSON.stringify(result))
  process.exit(checks.every(c => c.ok) ? 0 : 1)
}

main()
