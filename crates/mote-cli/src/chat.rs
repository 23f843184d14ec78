//! `mote chat`: a multi-turn conversation read line by line from stdin, so it works both
//! at a terminal and from a script (`printf 'hi\n/exit\n' | mote chat`).

use std::io::{BufRead, IsTerminal, Write};
use std::ops::ControlFlow;

use anyhow::{Context, Result};
use mote_session::{
    BuiltinFormat, Chat, ChatTemplate, FinishReason, Loaded, SessionError, TokenCodec,
};

use crate::args::ChatArgs;
use crate::cache_files::{self, PromptCache};
use crate::model_path;
use crate::run::{generate_options, load, sampler, seed, summary, RealSession};

const HELP: &str = "commands: /reset (start over), /exit (quit), /help";

pub fn chat(args: ChatArgs) -> Result<()> {
    let path = model_path::resolve(&args.model)?;
    let Loaded {
        mut session,
        load_time,
    } = load(&path, &args.gen)?;
    let template = choose_template(&session, args.chat_template.as_deref())?;
    tracing::info!("chat format: {}", template.describe());
    let mut sampler = sampler(&args.gen, seed(&args.gen), session.context_size())?;
    let mut opts = generate_options(&args.gen, load_time)?;
    // In chat, `--keep -1` means the system prompt, which a shift always keeps anyway.
    let bos = session.tokenizer().bos_id().is_some();
    opts.shift = args.gen.context.policy(session.context_size(), 0, bos);
    let mut chat = Chat::new(template, args.system_prompt.clone());
    let mut prompt_cache = PromptCache::open(&args.gen, &mut session);
    if let Some(path) = &args.session {
        if let Some(messages) = cache_files::resume_chat(&mut session, path)? {
            eprintln!(
                "(resumed {} messages, {} tokens in the cache, from {})",
                messages.len(),
                session.context_tokens().len(),
                path.display()
            );
            chat.set_messages(messages);
        }
    }

    let stdin = std::io::stdin();
    let interactive = stdin.is_terminal();
    if interactive {
        eprintln!("mote chat: {} ({HELP})", path.display());
    }
    let mut stdout = std::io::stdout().lock();
    let mut lines = stdin.lock().lines();
    loop {
        if interactive {
            eprint!("> ");
        }
        let Some(line) = lines.next() else { break };
        let line = line.context("cannot read stdin")?;
        let text = line.trim();
        match text {
            "" => continue,
            "/exit" | "/quit" => break,
            "/reset" => {
                chat.reset();
                session.reset();
                if let Some(path) = &args.session {
                    cache_files::save_chat(&session, chat.messages(), path)?;
                }
                eprintln!("(conversation reset)");
                continue;
            }
            "/help" => {
                eprintln!("{HELP}");
                continue;
            }
            _ => {}
        }
        let mut write_failed = false;
        let result = chat.respond(
            &mut session,
            &mut sampler,
            &opts,
            text,
            &mut |piece| match stdout
                .write_all(piece.as_bytes())
                .and_then(|_| stdout.flush())
            {
                Ok(()) => ControlFlow::Continue(()),
                Err(_) => {
                    write_failed = true;
                    ControlFlow::Break(())
                }
            },
        );
        // Only the first turn pays for loading in its time-to-first-token.
        opts.load_time = std::time::Duration::ZERO;
        match result {
            Ok(c) => {
                if write_failed {
                    break;
                }
                writeln!(stdout).context("cannot write to stdout")?;
                tracing::info!("{}", summary(&c));
                if c.stats.n_discarded > 0 {
                    eprintln!(
                        "(context shift: {} tokens of earlier conversation dropped)",
                        c.stats.n_discarded
                    );
                }
                if let Some(path) = &args.session {
                    cache_files::save_chat(&session, chat.messages(), path)?;
                }
                // The first turn's prompt (system prompt and first message) is kept.
                if let Some(mut pc) = prompt_cache.take() {
                    let context = session.context_tokens();
                    if let Some(prompt) = context.get(..c.stats.prompt_tokens).map(<[u32]>::to_vec)
                    {
                        pc.update(&session, &prompt)?;
                    }
                }
                if c.finish_reason == FinishReason::Context {
                    eprintln!("(the context is full; /reset to start a new conversation)");
                }
            }
            Err(e @ SessionError::PromptTooLong { .. }) => {
                eprintln!("error: {e}; /reset to start a new conversation");
            }
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

fn choose_template(session: &RealSession, flag: Option<&str>) -> Result<ChatTemplate> {
    let tok = session.tokenizer();
    let special = |id: Option<u32>| {
        id.map(|i| TokenCodec::token_text(tok, i))
            .unwrap_or_default()
    };
    let (bos, eos) = (special(tok.bos_id()), special(tok.eos_id()));
    Ok(match flag {
        None => ChatTemplate::detect(session.model().model().gguf(), tok)?,
        Some(name) => match BuiltinFormat::from_name(name) {
            Some(f) => ChatTemplate::builtin(f, &bos, &eos),
            None => ChatTemplate::jinja(name, &bos, &eos)
                .context("--chat-template is neither a known name nor a valid template")?,
        },
    })
}
