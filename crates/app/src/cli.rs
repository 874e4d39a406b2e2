//! Command-line flags (clap derive): a short line each for `-h`, more for `--help`.

use clap::{Args, Parser, Subcommand, ValueEnum};
use std::path::PathBuf;

#[derive(Parser, Debug)]
#[command(
    name = "app",
    version,
    about = "Transfer learning of an ImageNet MobileNetV2 to classify photos, on the CPU"
)]
pub struct Cli {
    /// Worker threads (default: RAYON_NUM_THREADS or all cores).
    #[arg(long, global = true)]
    pub threads: Option<usize>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Fine-tune MobileNetV2 + a dense head on `<data>/{train,valid,test}/<class>/*.jpg`.
    Train(Box<TrainArgs>),
    /// Score a trained run on a split: accuracy, per-class metrics, confusion matrix.
    Eval(EvalArgs),
    /// Label images with a trained run, or with ImageNet classes from weights that have the top.
    Predict(PredictArgs),
    /// Write the outputs of named layers for an input batch (`.npy`), as Keras's `Model(inputs, layer.output)`.
    Activations(ActivationsArgs),
    /// Write the classifier as an ONNX model (opset 17) for ONNX Runtime, OpenVINO, TensorRT...
    Export(ExportArgs),
    /// Show where the model looked: Grad-CAM heatmaps over the photos (`<stem>.cam.png`).
    Explain(ExplainArgs),
    /// Keras's model.summary(): layers, output shapes, parameters, and which layers train.
    Summary(SummaryArgs),
    /// Learning-rate range test (fastai's lr_find): loss against an exponentially growing rate.
    LrFind(Box<LrFindArgs>),
    /// Serve the model over HTTP: a JSON API (predict, explain, model, health, metrics) and a web page.
    Serve(ServeArgs),
    /// Post-training int8 quantization: calibrate on real photos, write a model for `predict --model`.
    Quantize(QuantizeArgs),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Preset {
    /// The study's first model: base frozen, lr 1e-5, x/255, augmentation.
    StudyFrozen,
    /// The study's final model: last 3 base layers unfrozen, lr 1e-4, x/255, augmentation.
    StudyFinetune,
    /// Our recommended recipe (see README): frozen base, cached features, lr 1e-3, MobileNet preprocessing.
    Best,
    /// Two phases as fastai's fine_tune: best for 5 epochs, then block_16 and Conv_1 at lr 1e-4 for 5.
    Finetune,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum OptimizerKind {
    Adam,
    Sgd,
}

#[derive(Args, Debug, Default, Clone)]
pub struct TrainArgs {
    /// Data folder with train/ valid/ [test/] splits [default: data/sports].
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// MobileNetV2 weights: a `<layer>/<var>.npy` folder or `.npz` [default: weights/mobilenet_v2_1.0_224_no_top].
    #[arg(long)]
    pub weights: Option<PathBuf>,
    /// Expected width multiplier; checked against the weights.
    #[arg(long)]
    pub alpha: Option<f32>,
    /// A recipe; explicit flags override its values. Without one, `best` applies.
    #[arg(long, value_enum)]
    pub preset: Option<Preset>,
    /// Passes over the training data [default: the preset's, 10]. With --resume: a larger number
    /// trains a finished run further.
    #[arg(long)]
    pub epochs: Option<usize>,
    /// Images per training step [default: 32].
    #[arg(long)]
    pub batch_size: Option<usize>,
    /// Learning rate [default: the preset's: 1e-3 for best, 1e-4 study-finetune, 1e-5 study-frozen].
    #[arg(long, allow_negative_numbers = true)]
    pub lr: Option<f32>,
    #[arg(long, value_enum)]
    pub optimizer: Option<OptimizerKind>,
    /// Make the last N base layers trainable (Keras counting: BN, ReLU, padding and add layers count).
    #[arg(long)]
    pub unfreeze: Option<usize>,
    /// Units of the hidden Dense(relu) layer of the head (0: none).
    #[arg(long)]
    pub dense: Option<usize>,
    /// Dropout rate after pooling [default: 0].
    #[arg(long, allow_negative_numbers = true)]
    pub dropout: Option<f32>,
    /// Augmentation `rotation,width_shift,height_shift,zoom,flip` (e.g. `20,0.2,0.2,0.2,1`), or `off`.
    #[arg(long)]
    pub augment: Option<String>,
    /// Pixel scaling: `mobilenet` (x/127.5-1) or `unit` (x/255).
    #[arg(long)]
    pub preprocess: Option<String>,
    /// Seeds the head's initialisation, the shuffling, augmentation and dropout [default: 0].
    #[arg(long)]
    pub seed: Option<u64>,
    /// Run folder [default: runs/<timestamp>, never an existing one].
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Replace what an existing, non-empty --out folder holds.
    #[arg(long)]
    pub overwrite: bool,
    /// Continue an interrupted run from its folder (with --epochs N: train a finished run further).
    #[arg(long, conflicts_with_all = ["data", "weights", "preset", "lr", "out", "init_from", "early_stopping", "reduce_lr_on_plateau", "schedule", "warmup_epochs", "class_weight", "validation_split", "frozen_epochs", "finetune_lr", "labels_csv"])]
    pub resume: Option<PathBuf>,
    /// Start the model (base and head) from a run's final weights instead of ImageNet's.
    #[arg(long, value_name = "RUN")]
    pub init_from: Option<PathBuf>,
    /// Print the resolved configuration (preset and flags) and exit without training.
    #[arg(long)]
    pub dry_run: bool,
    /// Use only the first N training images of each class (quick runs; at least 1).
    #[arg(long)]
    pub limit_per_class: Option<usize>,
    /// A bad image is an error instead of a skipped warning.
    #[arg(long)]
    pub strict: bool,
    /// Plain lines instead of progress bars.
    #[arg(long)]
    pub quiet: bool,
    /// Print the time per layer at the end (forward and backward, ms per training batch).
    #[arg(long)]
    pub profile: bool,
    /// Stop as after Ctrl-C once this many batches ran (for tests and scripted interruptions).
    #[arg(long, hide = true)]
    pub interrupt_after: Option<u64>,
    /// Print the whole model summary (every layer), not the shortened one.
    #[arg(long)]
    pub verbose: bool,
    /// Stop when val_loss has not improved for PATIENCE epochs (Keras's EarlyStopping).
    #[arg(long, value_name = "PATIENCE")]
    pub early_stopping: Option<usize>,
    /// With --early-stopping: end with the weights of the epoch with the lowest val_loss.
    #[arg(long, requires = "early_stopping")]
    pub restore_best_weights: bool,
    /// Multiply the learning rate by FACTOR when val_loss has not improved for PATIENCE epochs.
    #[arg(long, value_name = "FACTOR,PATIENCE")]
    pub reduce_lr_on_plateau: Option<String>,
    /// Learning rate by epoch: cosine, step (x0.1 every third of the epochs), step:EVERY,FACTOR.
    #[arg(long)]
    pub schedule: Option<String>,
    /// Grow the learning rate linearly from ~0 over the first N epochs (batch by batch).
    #[arg(long, value_name = "N")]
    pub warmup_epochs: Option<usize>,
    /// Train this many epochs with the base frozen first, then the --unfreeze layers (two phases).
    #[arg(long, value_name = "N")]
    pub frozen_epochs: Option<usize>,
    /// The learning rate after --frozen-epochs [default: --lr / 10].
    #[arg(long, value_name = "LR")]
    pub finetune_lr: Option<f32>,
    /// Images and labels from a CSV (header `path,label[,split]`, paths relative to the CSV;
    /// split: train, valid or test) instead of class folders.
    #[arg(long, value_name = "FILE")]
    pub labels_csv: Option<PathBuf>,
    /// Take this fraction of train/ (chosen by --seed, Keras's validation_split) as the validation
    /// images instead of valid/.
    #[arg(long, value_name = "FRACTION")]
    pub validation_split: Option<f32>,
    /// Weigh each class's loss: balanced (n / (classes * count), as Keras/scikit-learn), one weight
    /// per class in class order (1,5,1), or NAME=W pairs (others 1).
    #[arg(long, value_name = "balanced|W,W,...|NAME=W,...")]
    pub class_weight: Option<String>,
}

#[derive(Args, Debug)]
pub struct EvalArgs {
    /// Run folder written by `train`.
    #[arg(long)]
    pub checkpoint: PathBuf,
    #[arg(long, default_value = "test")]
    pub split: String,
    /// Data folder [default: the run's].
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// Use the checkpoint with the lowest validation loss (best.npz) instead of the final model (last.npz).
    #[arg(long)]
    pub best: bool,
    /// Machine-readable output.
    #[arg(long)]
    pub json: bool,
    /// List at most this many misclassified files (0: none).
    #[arg(long, default_value_t = 20)]
    pub show_misclassified: usize,
    /// Write the N highest-loss images as PNGs (photo, Grad-CAM of the predicted class, true and
    /// predicted class with probabilities) into `RUN/top_losses_<split>/`.
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub gallery: usize,
    /// Also score with test-time augmentation (the mean of each image and its horizontal flip)
    /// and print the accuracy with and without it.
    #[arg(long)]
    pub tta: bool,
}

/// How `predict` writes its results.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum PredictFormat {
    /// `path: label 0.912, label 0.051` lines.
    Human,
    /// Header `path,label,probability[,label_2,probability_2...]`, one row a photo.
    Csv,
    /// One JSON object a photo: `{"path", "top": [{"label", "index", "probability"}]}`.
    Jsonl,
}

#[derive(Args, Debug)]
#[command(
    after_long_help = "Exit status: 0 every image classified; 1 finished, but some files were \
skipped (each named on stderr); 2 error (nothing written to --output)."
)]
pub struct PredictArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    #[command(flatten)]
    pub quantized: QuantizedModelArg,
    /// How many classes to report per image.
    #[arg(long, default_value_t = 1)]
    pub top: usize,
    /// Override the resize interpolation (nearest or bilinear) [default: the run's; bilinear for --weights].
    #[arg(long)]
    pub interpolation: Option<String>,
    /// Images per inference batch.
    #[arg(long, default_value_t = 32)]
    pub batch_size: usize,
    /// Output format.
    #[arg(long, value_enum, default_value_t = PredictFormat::Human)]
    pub format: PredictFormat,
    /// Write the results to this file (atomically: complete or not at all) instead of stdout.
    #[arg(long)]
    pub output: Option<PathBuf>,
    /// A file listing inputs, one path a line (`-`: standard input).
    #[arg(long)]
    pub list: Option<PathBuf>,
    /// Classify only part K of N (1 <= K <= N) of the sorted inputs: contiguous parts, so the N
    /// outputs concatenated in order equal one unsharded run (CSV: only part 1 has the header).
    #[arg(long, value_name = "K/N")]
    pub shard: Option<String>,
    /// A bad file is an error instead of a skipped warning.
    #[arg(long)]
    pub strict: bool,
    /// No progress bar.
    #[arg(long)]
    pub quiet: bool,
    /// Print the time per step of the folded forward pass.
    #[arg(long)]
    pub profile: bool,
    /// Image files and folders (walked recursively, sorted, hidden files skipped; the content
    /// decides what is an image).
    #[arg(required_unless_present = "list")]
    pub images: Vec<PathBuf>,
}

#[derive(Args, Debug)]
pub struct ActivationsArgs {
    /// MobileNetV2 weights (with or without the top).
    #[arg(long)]
    pub weights: PathBuf,
    /// Input: an image file (decoded, resized to 224x224 bilinearly, x/127.5-1) or an NHWC
    /// float32 `.npy` batch, already preprocessed.
    #[arg(long, required_unless_present = "list")]
    pub input: Option<PathBuf>,
    /// Comma-separated Keras layer names (`features` = pooled out_relu; `predictions` needs the top).
    #[arg(long, value_delimiter = ',')]
    pub layers: Vec<String>,
    /// Print the layer names of these weights and exit.
    #[arg(long)]
    pub list: bool,
    #[arg(long, required_unless_present = "list")]
    pub out: Option<PathBuf>,
}

/// Model file formats `export` writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum ExportFormat {
    /// ONNX, opset 17: NHWC float32 `image` [batch, H, W, 3] -> `probabilities` [batch, classes].
    Onnx,
}

#[derive(Args, Debug)]
#[command(group(clap::ArgGroup::new("model").required(true).args(["checkpoint", "weights"])))]
pub struct ExportArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    #[arg(long, value_enum, default_value_t = ExportFormat::Onnx)]
    pub format: ExportFormat,
    /// The model file to write (atomically).
    #[arg(long)]
    pub out: PathBuf,
    /// Bake the pixel scaling into the model: its input is then the resized RGB photo as float
    /// 0..255. Without it the caller applies the scaling named in the metadata.
    #[arg(long)]
    pub include_preprocessing: bool,
    /// Keep BatchNormalization nodes instead of folding them into the convolutions.
    #[arg(long)]
    pub keep_batchnorm: bool,
    /// Replace an existing --out file.
    #[arg(long)]
    pub force: bool,
}

#[derive(Args, Debug)]
#[command(
    group(clap::ArgGroup::new("model").required(true).args(["checkpoint", "weights"])),
    after_long_help = "Grad-CAM as keras.io computes it: the gradient of the class's logit (before \
softmax) with respect to out_relu, averaged over the map into channel weights; the heatmap is \
ReLU(out_relu . weights) divided by its maximum, one cell per 32x32 pixels of the input. \
Exit status: 0 every image explained; 1 some files were skipped (each named); 2 error."
)]
pub struct ExplainArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    /// Explain this class (a name or an index) instead of the predicted one.
    #[arg(long, conflicts_with = "top")]
    pub class: Option<String>,
    /// Explain each of the K most probable classes (files `<stem>.top<k>.cam.png` when K > 1).
    #[arg(long, default_value_t = 1)]
    pub top: usize,
    /// Also write each heatmap as `<stem>.cam.npy` (float32, [H/32, W/32], values in [0, 1]).
    #[arg(long)]
    pub raw: bool,
    /// Override the resize interpolation (nearest or bilinear) [default: the run's; bilinear for --weights].
    #[arg(long)]
    pub interpolation: Option<String>,
    /// Folder for the heatmaps (created if needed).
    #[arg(long)]
    pub out: PathBuf,
    /// Replace heatmap files already in --out.
    #[arg(long)]
    pub force: bool,
    /// Image files and folders (walked recursively, sorted).
    #[arg(required = true)]
    pub images: Vec<PathBuf>,
}

#[derive(Args, Debug, Clone)]
pub struct ServeArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    #[command(flatten)]
    pub quantized: QuantizedModelArg,
    /// Address to listen on. Loopback by default; another address (0.0.0.0:8080) needs --public.
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub addr: String,
    /// Allow --addr to be an address other than loopback (the API has no authentication).
    #[arg(long)]
    pub public: bool,
    /// Most images scored together as one batch.
    #[arg(long, default_value_t = 16)]
    pub max_batch: usize,
    /// Longest a request waits for others to join its batch, in milliseconds.
    #[arg(long, default_value_t = 5)]
    pub max_wait_ms: u64,
    /// Images waiting to be scored, at most; beyond it requests get 503.
    #[arg(long, default_value_t = 256)]
    pub queue: usize,
    /// Largest request body accepted, in bytes (larger: 413).
    #[arg(long, default_value_t = 20_000_000)]
    pub max_bytes: usize,
    /// Override the resize interpolation (nearest or bilinear) [default: the run's; bilinear for --weights].
    #[arg(long)]
    pub interpolation: Option<String>,
}

#[derive(Args, Debug, Clone)]
pub struct SummaryArgs {
    /// A run folder written by `train` (its classifier).
    #[arg(long, conflicts_with = "weights")]
    pub checkpoint: Option<PathBuf>,
    /// ImageNet weights (with or without the top).
    #[arg(long)]
    pub weights: Option<PathBuf>,
    /// Mark the last N base layers trainable, as `train --unfreeze N` would [default: the run's; 0].
    #[arg(long)]
    pub unfreeze: Option<usize>,
    /// Only the first layers, the trainable ones and the totals.
    #[arg(long)]
    pub short: bool,
}

#[derive(Args, Debug, Clone)]
pub struct LrFindArgs {
    /// The training set-up to test (the same flags as `train`; --lr and --epochs are not used).
    #[command(flatten)]
    pub train: TrainArgs,
    /// The first learning rate.
    #[arg(long, default_value_t = 1e-7)]
    pub start_lr: f32,
    /// The last learning rate (the test stops earlier when the loss diverges).
    #[arg(long, default_value_t = 10.0)]
    pub end_lr: f32,
    /// Batches at most.
    #[arg(long, default_value_t = 100)]
    pub steps: usize,
    /// Where to write the plot.
    #[arg(long, default_value = "lr_find.png")]
    pub plot: PathBuf,
}

/// `--model FILE`: a quantized model written by `app quantize`, for the commands that only score.
#[derive(Args, Debug, Clone, Default)]
pub struct QuantizedModelArg {
    /// A quantized model file written by `app quantize` (int8; classes and preprocessing inside).
    #[arg(long = "model", conflicts_with_all = ["checkpoint", "weights", "best", "labels"])]
    pub file: Option<PathBuf>,
}

#[derive(Args, Debug)]
#[command(
    group(clap::ArgGroup::new("model").required(true).args(["checkpoint", "weights"])),
    after_long_help = "Weights: int8, symmetric, one scale per output channel. Activations: uint8 with a \
zero point, one scale per tensor, from the minimum and maximum each tensor reaches on the calibration \
photos (min-max calibration). Sums in int32; 1x1 and depthwise convolutions and residual adds run \
on integer kernels (AVX-512 VNNI where the CPU has it), the first convolution and the head in \
float32. With --checkpoint the run's train split calibrates and its valid and test splits are \
scored by both models; with --weights, --calibration is required."
)]
pub struct QuantizeArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    /// Photos (files or folders) to calibrate on [default with --checkpoint: the run's train split].
    #[arg(long)]
    pub calibration: Vec<PathBuf>,
    /// How many of them (spread evenly over the sorted list).
    #[arg(long, default_value_t = 200)]
    pub samples: usize,
    /// Photos (files or folders) on which to compare the int8 model with the f32 one
    /// [default with --checkpoint: the run's valid and test splits].
    #[arg(long)]
    pub check: Vec<PathBuf>,
    /// Override the resize interpolation (nearest or bilinear) [default: the run's; bilinear for --weights].
    #[arg(long)]
    pub interpolation: Option<String>,
    /// The quantized model file to write (atomically).
    #[arg(long)]
    pub out: PathBuf,
    /// Replace an existing --out file.
    #[arg(long)]
    pub force: bool,
}

/// The model a command uses: a trained run, or ImageNet weights with their top.
#[derive(Args, Debug, Clone)]
pub struct ModelArgs {
    /// Run folder written by `train` (its final model, last.npz; --best for best.npz).
    #[arg(long, conflicts_with = "weights")]
    pub checkpoint: Option<PathBuf>,
    /// With --checkpoint: the lowest-validation-loss model (best.npz).
    #[arg(long)]
    pub best: bool,
    /// ImageNet weights with the top (the 1000 ImageNet classes).
    #[arg(long)]
    pub weights: Option<PathBuf>,
    /// With --weights: `imagenet_class_index.json` [default: beside the weights].
    #[arg(long)]
    pub labels: Option<PathBuf>,
}

impl ModelArgs {
    /// The model these flags name, for `command`'s error messages.
    pub fn source(&self, command: &str) -> anyhow::Result<crate::scoring::Source<'_>> {
        static NO_FILE: QuantizedModelArg = QuantizedModelArg { file: None };
        self.source_or(command, &NO_FILE)
    }

    /// The model these flags or `--model FILE` name.
    pub fn source_or<'a>(
        &'a self,
        command: &str,
        quantized: &'a QuantizedModelArg,
    ) -> anyhow::Result<crate::scoring::Source<'a>> {
        if let Some(file) = &quantized.file {
            return Ok(crate::scoring::Source::Quantized { file });
        }
        crate::scoring::Source::from_flags(
            command,
            self.checkpoint.as_deref(),
            self.best,
            self.weights.as_deref(),
            self.labels.as_deref(),
        )
    }
}
