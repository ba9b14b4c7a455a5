// Answer prompts with a real llama.cpp (node-llama-cpp 3.21.1, CPU): greedy, no repetition penalty, at most
// MAX_TOKENS new tokens, cut at the first newline -- as utils.evaluation.qa.generate_answers decodes.
//   node answer.mjs MODEL.gguf PROMPTS.json MAX_TOKENS > ANSWERS.json
// PROMPTS.json: a JSON list of fully rendered prompts (special tokens as text: they are parsed as special tokens).
import {readFileSync} from "node:fs";
import {getLlama, LlamaCompletion} from "node-llama-cpp";

const [modelPath, promptsPath, maxTokens] = process.argv.slice(2);
const prompts = JSON.parse(readFileSync(promptsPath, "utf8"));
const llama = await getLlama({gpu: false, logLevel: "error"});
const model = await llama.loadModel({modelPath});
const answers = [];
for (const prompt of prompts) {
    const context = await model.createContext({contextSize: 2048, threads: 1});
    const completion = new LlamaCompletion({contextSequence: context.getSequence()});
    const tokens = model.tokenize(prompt, true);
    const text = await completion.generateCompletion(tokens, {
        maxTokens: Number(maxTokens), temperature: 0, repeatPenalty: false, customStopTriggers: ["\n"]});
    answers.push(text.split("\n")[0].trim());
    await context.dispose();
}
process.stdout.write(JSON.stringify({llama_cpp: "node-llama-cpp 3.21.1", answers}));
