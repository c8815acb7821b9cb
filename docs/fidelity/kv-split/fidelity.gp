# Rate-distortion plot written by `vkv-eval table`. Run it from its own folder:
#   cd docs/fidelity && gnuplot fidelity.gp
set terminal pngcairo size 1400,560 noenhanced font ',10'
set output 'fidelity.png'
set datafile separator tab
set key outside bottom center horizontal
set logscale xy
set xrange [0.9:3]
set grid
set xlabel 'bits per element (reference chunk, all metadata)'
set multiplot layout 1,2
set title 'KL vs bits/element'
set ylabel 'attention KL(P||P_hat), nats'
plot 'fidelity.tsv' skip 1 using (strcol(1) eq 'llava-like' && $4 < 8 ? $4 : 1/0):5 with points pt 5 ps 1.3 title 'llava-like', \
     'fidelity.tsv' skip 1 using (strcol(1) eq 'qwen-like' && $4 < 8 ? $4 : 1/0):5 with points pt 6 ps 1.3 title 'qwen-like', \
     'fidelity.tsv' skip 1 using (strcol(1) eq 'internvl-like' && $4 < 8 ? $4 : 1/0):5 with points pt 7 ps 1.3 title 'internvl-like', \
     'fidelity.tsv' skip 1 using (strcol(1) eq 'outlier-heavy' && $4 < 8 ? $4 : 1/0):5 with points pt 8 ps 1.3 title 'outlier-heavy', \
     'fidelity.tsv' skip 1 using (strcol(1) eq 'vit-like' && $4 < 8 ? $4 : 1/0):5 with points pt 9 ps 1.3 title 'vit-like', \
     'fidelity.tsv' skip 1 using (strcol(1) eq 'mild-spread' && $4 < 8 ? $4 : 1/0):5 with points pt 10 ps 1.3 title 'mild-spread', \
     'fidelity.tsv' skip 1 using (strcol(1) eq 'heavy-spread' && $4 < 8 ? $4 : 1/0):5 with points pt 11 ps 1.3 title 'heavy-spread', \
     'fidelity.tsv' skip 1 using (strcol(1) eq 'hd64-rope1e5' && $4 < 8 ? $4 : 1/0):5 with points pt 12 ps 1.3 title 'hd64-rope1e5', \
     'fidelity.tsv' skip 1 using (strcol(1) eq 'hd96-rope5e5' && $4 < 8 ? $4 : 1/0):5 with points pt 13 ps 1.3 title 'hd96-rope5e5', \
     'fidelity.tsv' skip 1 using (strcol(1) eq 'smollm2.safetensors' && $4 < 8 ? $4 : 1/0):5 with points pt 14 ps 1.3 title 'smollm2.safetensors'
set title 'out_err vs bits/element'
set ylabel 'attention output relative error'
plot 'fidelity.tsv' skip 1 using (strcol(1) eq 'llava-like' && $4 < 8 ? $4 : 1/0):7 with points pt 5 ps 1.3 title 'llava-like', \
     'fidelity.tsv' skip 1 using (strcol(1) eq 'qwen-like' && $4 < 8 ? $4 : 1/0):7 with points pt 6 ps 1.3 title 'qwen-like', \
     'fidelity.tsv' skip 1 using (strcol(1) eq 'internvl-like' && $4 < 8 ? $4 : 1/0):7 with points pt 7 ps 1.3 title 'internvl-like', \
     'fidelity.tsv' skip 1 using (strcol(1) eq 'outlier-heavy' && $4 < 8 ? $4 : 1/0):7 with points pt 8 ps 1.3 title 'outlier-heavy', \
     'fidelity.tsv' skip 1 using (strcol(1) eq 'vit-like' && $4 < 8 ? $4 : 1/0):7 with points pt 9 ps 1.3 title 'vit-like', \
     'fidelity.tsv' skip 1 using (strcol(1) eq 'mild-spread' && $4 < 8 ? $4 : 1/0):7 with points pt 10 ps 1.3 title 'mild-spread', \
     'fidelity.tsv' skip 1 using (strcol(1) eq 'heavy-spread' && $4 < 8 ? $4 : 1/0):7 with points pt 11 ps 1.3 title 'heavy-spread', \
     'fidelity.tsv' skip 1 using (strcol(1) eq 'hd64-rope1e5' && $4 < 8 ? $4 : 1/0):7 with points pt 12 ps 1.3 title 'hd64-rope1e5', \
     'fidelity.tsv' skip 1 using (strcol(1) eq 'hd96-rope5e5' && $4 < 8 ? $4 : 1/0):7 with points pt 13 ps 1.3 title 'hd96-rope5e5', \
     'fidelity.tsv' skip 1 using (strcol(1) eq 'smollm2.safetensors' && $4 < 8 ? $4 : 1/0):7 with points pt 14 ps 1.3 title 'smollm2.safetensors'
unset multiplot
